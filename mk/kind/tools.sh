#!/usr/bin/env bash
# Prints KIND=, KUBECTL= and HELM= for `make up`/`make e2e`: the pinned kind built into the
# cache (go install from the Go module proxy) unless that version is on PATH, and kubectl and
# helm: the cached binaries of the cluster test layer (tests/cluster/build.sh), else PATH.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"
missing=()
kind=$cache/bin/kind-$KIND_VERSION/kind
if command -v kind >/dev/null 2>&1 && kind version 2>/dev/null | grep -q " $KIND_VERSION "; then
  kind=$(command -v kind)
elif [[ ! -x $kind ]]; then
  if command -v go >/dev/null 2>&1; then
    echo "      building kind $KIND_VERSION (go install, ~1 min) ..." >&2
    mkdir -p "$(dirname "$kind")"
    GOBIN=$(dirname "$kind") CGO_ENABLED=0 GOFLAGS=-buildvcs=false go install "sigs.k8s.io/kind@$KIND_VERSION" >&2
  else
    missing+=("kind $KIND_VERSION (https://kind.sigs.k8s.io), or Go to build it")
  fi
fi
# The pinned binaries of the cluster test layer when they are built (their version matches the
# node's), else what is on PATH, else built now.
cached_kubectl=$cache/bin/kube-$KUBERNETES_VERSION/kubectl cached_helm=$cache/bin/helm-$HELM_VERSION/helm
kubectl=$cached_kubectl helm=$cached_helm
[[ -x $kubectl ]] || kubectl=$(command -v kubectl || true)
[[ -x $helm ]] || helm=$(command -v helm || true)
if [[ -z $kubectl || -z $helm ]]; then
  if command -v go >/dev/null 2>&1; then
    bash "$root/tests/cluster/build.sh" >&2
  fi
  [[ -n $kubectl ]] || kubectl=$cached_kubectl
  [[ -n $helm ]] || helm=$cached_helm
  [[ -x $kubectl ]] || missing+=("kubectl (https://kubernetes.io/docs/tasks/tools/), or Go to build it")
  [[ -x $helm ]] || missing+=("helm 3 (https://helm.sh/docs/intro/install/), or Go to build it")
fi
if ((${#missing[@]})); then
  echo "make up: missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
echo "KIND=$kind KUBECTL=$kubectl HELM=$helm"
