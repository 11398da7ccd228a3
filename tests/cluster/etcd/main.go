// Command etcd is etcd's own main, wrapped so it can be built from the Go module proxy:
// etcd's server module cannot be `go install`ed because its go.mod uses relative replaces.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
