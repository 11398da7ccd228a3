#!/usr/bin/env bash
# Builds, from the Go module proxy, what a kind node needs besides the cluster test layer's
# binaries (tests/cluster/build.sh): kind itself, kubelet, kubeadm, kube-scheduler, kube-proxy,
# crictl, CoreDNS, local-path-provisioner, and a static pause. Cached by version under
# ~/.cache/claimops/bin/<component>-<version>/; a warm run costs seconds. Waits for any other
# Go build of ours first (tests/cluster/go-build.sh), so the Kubernetes packages the test
# layer's binaries share with these compile once, into Go's build cache.
# Usage: mk/kind/build-binaries.sh [--print-kind]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"
source "$root/tests/cluster/go-build.sh"
bin=$cache/bin

if [[ ${1:-} == --print-kind ]]; then
  echo "$bin/kind-$KIND_VERSION/kind"
  exit 0
fi

go_build_lock
# The node also runs the test layer's kubectl and etcd: build those first, under this lock.
bash "$root/tests/cluster/build.sh"

module_dir() { # module_dir <module@version>: its source in the module cache, downloaded if needed
  (cd "$root/tests/cluster/kube" && GOFLAGS=-mod=mod go mod download -json "$1") \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}
go_install() { # go_install <dir> <module/package@version>: go install into <dir>, unless there
  local dir=$1 name=${2%@*}; name=${name##*/}
  if [[ -x $dir/$name ]]; then echo "cached: $dir/$name"; return; fi
  echo "building $name ..."
  local start=$SECONDS
  GOBIN=$dir go install -trimpath -ldflags "-s -w" "$2"
  echo "built $name in $((SECONDS - start)) s"
}

go_build_into "$bin/kube-$KUBERNETES_VERSION" "$root/tests/cluster/kube" "$(kube_ldflags)" \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kube-proxy
go_install "$bin/kind-$KIND_VERSION" "sigs.k8s.io/kind@$KIND_VERSION"
go_install "$bin/crictl-$CRICTL_VERSION" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
go_install "$bin/coredns-$COREDNS_VERSION" "github.com/coredns/coredns@$COREDNS_VERSION"
go_install "$bin/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION" \
  "github.com/rancher/local-path-provisioner@$LOCAL_PATH_PROVISIONER_VERSION"

# pause: the sandbox process, from the C source the k8s.io/kubernetes module ships.
pause=$bin/pause-$KUBERNETES_VERSION/pause
if [[ -x $pause ]]; then
  echo "cached: $pause"
else
  mkdir -p "$(dirname "$pause")"
  gcc -Os -static -o "$pause" "$(module_dir "k8s.io/kubernetes@$KUBERNETES_VERSION")/build/pause/linux/pause.c"
fi
