#!/usr/bin/env bash
# Builds static, version-stamped etcd, kube-apiserver, kube-controller-manager, kubectl, helm
# and MinIO from the Go module proxy into ~/.cache/claimops/bin/<component>-<version>/.
# A binary already in the cache is not rebuilt, so a warm run costs seconds. Waits for any
# other Go build of ours to finish first (tests/cluster/go-build.sh).
# Usage: tests/cluster/build.sh [--print-dir]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${CLAIMOPS_CACHE:-$HOME/.cache/claimops}
# shellcheck source=go-build.sh
source "$here/go-build.sh"
kube_dir=$cache/bin/kube-$KUBERNETES_VERSION
etcd_dir=$cache/bin/etcd-$ETCD_VERSION
helm_dir=$cache/bin/helm-$HELM_VERSION
minio_dir=$cache/bin/minio-$MINIO_VERSION

if [[ ${1:-} == --print-dir ]]; then
  echo "$kube_dir:$etcd_dir:$helm_dir"
  exit 0
fi

all_cached=true
for binary in "$kube_dir"/{kube-apiserver,kube-controller-manager,kubectl} "$etcd_dir/etcd" "$helm_dir/helm" \
    "$minio_dir/minio"; do
  [[ -x $binary ]] || all_cached=false
done
if [[ $all_cached == true ]]; then
  echo "cached: $kube_dir, $etcd_dir, $helm_dir, $minio_dir"
  exit 0
fi
go_build_lock
# The Kubernetes binaries first: nearly every cluster test needs them.
go_build_into "$kube_dir" "$here/kube" "$(kube_ldflags)" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
go_build_into "$etcd_dir" "$here/etcd" "-s -w" claimops.io/tests/cluster/etcd
go_build_into "$helm_dir" "$here/helm" \
  "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
  helm.sh/helm/v3/cmd/helm
# MinIO: the S3-compatible artifact store of the service tests (tests/harness/object_store.py).
go_build_into "$minio_dir" "$here/minio" "-s -w" github.com/minio/minio
