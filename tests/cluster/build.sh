#!/usr/bin/env bash
# Builds static, version-stamped etcd, kube-apiserver, kube-controller-manager, kubectl and
# helm from the Go module proxy into ~/.cache/claimops/bin/<component>-<version>/.
# A binary already in the cache is not rebuilt, so a warm run costs seconds.
# Usage: tests/cluster/build.sh [--print-dir]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
# shellcheck source=kube-ldflags.sh
source "$here/kube-ldflags.sh"
cache=${CLAIMOPS_CACHE:-$HOME/.cache/claimops}
kube_dir=$cache/bin/kube-$KUBERNETES_VERSION
etcd_dir=$cache/bin/etcd-$ETCD_VERSION
helm_dir=$cache/bin/helm-$HELM_VERSION
minio_dir=$cache/bin/minio-$MINIO_VERSION

if [[ ${1:-} == --print-dir ]]; then
  echo "$kube_dir:$etcd_dir:$helm_dir"
  exit 0
fi

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
# One link at a time: each can take ~2 GiB, and there are only two cores.
export GOMAXPROCS=${GOMAXPROCS:-2}

kube_ldflags=$(kube_ldflags_for "$KUBERNETES_VERSION")

build() { # build <dir> <name> <module-dir> <package> <ldflags>
  local dir=$1 name=$2 mod=$3 pkg=$4 ldflags=$5
  if [[ -x $dir/$name ]]; then
    echo "cached: $dir/$name"
    return
  fi
  mkdir -p "$dir"
  echo "building $name ($pkg) ..."
  local start=$SECONDS
  (cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$dir/$name.tmp" "$pkg")
  mv "$dir/$name.tmp" "$dir/$name"
  echo "built $name in $((SECONDS - start)) s"
}

build "$etcd_dir" etcd "$here/etcd" . "-s -w"
for cmd in kube-apiserver kube-controller-manager kubectl; do
  build "$kube_dir" "$cmd" "$here/kube" "k8s.io/kubernetes/cmd/$cmd" "$kube_ldflags"
done
build "$helm_dir" helm "$here/helm" helm.sh/helm/v3/cmd/helm \
  "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
# MinIO: the S3-compatible artifact store of the service tests (tests/harness/object_store.py).
build "$minio_dir" minio "$here/minio" github.com/minio/minio "-s -w"
