#!/usr/bin/env bash
# Builds, from the Go module proxy, what a kind node needs besides the cluster test layer's
# binaries (tests/cluster/build.sh): kind itself, kubelet, kubeadm, kube-scheduler, kube-proxy,
# crictl, CoreDNS, local-path-provisioner, and a static pause. Cached by version under
# ~/.cache/claimops/bin/<component>-<version>/; a warm run costs seconds.
# Usage: mk/kind/build-binaries.sh [--print-kind]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"
source "$root/tests/cluster/kube-ldflags.sh"
bin=$cache/bin

if [[ ${1:-} == --print-kind ]]; then
  echo "$bin/kind-$KIND_VERSION/kind"
  exit 0
fi

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOMAXPROCS=${GOMAXPROCS:-2}
# Without the version stamps kubeadm sees v0.0.0-master and asks for the wrong image tags.
kube_ldflags=$(kube_ldflags_for "$KUBERNETES_VERSION" 1970-01-01T00:00:00Z)

timed() { # timed <dir> <name> <command...>: run the command unless <dir>/<name> exists
  local dir=$1 name=$2; shift 2
  if [[ -x $dir/$name ]]; then echo "cached: $dir/$name"; return; fi
  mkdir -p "$dir"
  echo "building $name ..."
  local start=$SECONDS
  "$@"
  echo "built $name in $((SECONDS - start)) s"
}

go_install() { # go_install <dir> <module/package@version>: go install into <dir>
  GOBIN=$1 go install -trimpath -ldflags "-s -w" "$2"
}

kube_dir=$bin/kube-$KUBERNETES_VERSION
for cmd in kubelet kubeadm kube-scheduler kube-proxy; do
  timed "$kube_dir" "$cmd" bash -c "cd '$root/tests/cluster/kube' && go build -trimpath \
    -ldflags '$kube_ldflags' -o '$kube_dir/$cmd.tmp' k8s.io/kubernetes/cmd/$cmd && mv '$kube_dir/$cmd.tmp' '$kube_dir/$cmd'"
done
timed "$bin/kind-$KIND_VERSION" kind go_install "$bin/kind-$KIND_VERSION" "sigs.k8s.io/kind@$KIND_VERSION"
timed "$bin/crictl-$CRICTL_VERSION" crictl go_install "$bin/crictl-$CRICTL_VERSION" \
  "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
timed "$bin/coredns-$COREDNS_VERSION" coredns go_install "$bin/coredns-$COREDNS_VERSION" \
  "github.com/coredns/coredns@$COREDNS_VERSION"
timed "$bin/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION" local-path-provisioner go_install \
  "$bin/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION" \
  "github.com/rancher/local-path-provisioner@$LOCAL_PATH_PROVISIONER_VERSION"

# pause: the sandbox process, from the C source the k8s.io/kubernetes module ships.
pause_src=$(cd "$root/tests/cluster/kube" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
timed "$bin/pause-$KUBERNETES_VERSION" pause gcc -Os -static -o "$bin/pause-$KUBERNETES_VERSION/pause" "$pause_src"
