#!/usr/bin/env bash
# `make up`: the main job. A Docker engine, kind, kubectl and helm (each provided here when
# missing, where that is possible), our three images from our Dockerfiles, a kind cluster from
# manifests/kind-config.yaml, the images loaded, the chart installed with --wait; then the
# URLs and the next commands. Where no container registry answers, every image that would be
# pulled is built locally instead (mk/kind/node-image.sh, mk/kind/standin-images.sh).
# A second run reuses what exists. Settings (environment): KIND_CLUSTER, NAMESPACE, RELEASE,
# HELM_PROFILE (kind | embedded: extra values file), CLAIMOPS_OFFLINE (auto | 1 | 0).
# The release watches only its namespace, so another profile can be installed beside it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"
cd "$root"
cluster=${KIND_CLUSTER:-claimops}
namespace=${NAMESPACE:-claimops}
release=${RELEASE:-claimops}
profile=${HELM_PROFILE:-kind}
started=$SECONDS
step_no=0
step() { step_no=$((step_no + 1)); step_start=$SECONDS; printf '\n[%d/7] %s\n' "$step_no" "$*"; }
done_step() { echo "      ... $((SECONDS - step_start)) s"; }

step "Prerequisites: Docker engine, debootstrap, zstd"
bash "$here/prerequisites.sh"
done_step

step "kind $KIND_VERSION, kubectl and helm"
tools=$(bash "$here/tools.sh")
eval "$tools"   # KIND, KUBECTL, HELM
echo "      kind: $KIND"; echo "      kubectl: $KUBECTL"; echo "      helm: $HELM"
done_step

step "Images: ours from our Dockerfiles, stand-ins where no registry answers"
eval "$(bash "$here/images.sh")"   # tag, stage/operator/ui images, offline, stand-ins, extra images
done_step

step "kind cluster $cluster"
if "$KIND" get clusters 2>/dev/null | grep -qx "$cluster"; then
  # A cluster whose node stopped (the engine restarted) does not come back reliably: remake it.
  if [[ ${CLAIMOPS_FRESH_CLUSTER:-0} == 1 ]] \
      || [[ $(docker inspect -f '{{.State.Running}}' "$cluster-control-plane" 2>/dev/null) != true ]] \
      || ! "$KUBECTL" --context "kind-$cluster" get --raw /readyz >/dev/null 2>&1; then
    echo "      deleting the existing cluster (fresh requested, or its node is not running)"
    "$KIND" delete cluster --name "$cluster"
  else
    echo "      exists (make down deletes it)"
  fi
fi
if ! "$KIND" get clusters 2>/dev/null | grep -qx "$cluster"; then
  "$KIND" create cluster --name "$cluster" --config manifests/kind-config.yaml \
    ${node_image:+--image "$node_image"} --wait 5m
fi
kubectl() { "$KUBECTL" --context "kind-$cluster" "$@"; }
done_step

step "Load images into the cluster"
# kind skips an image whose ID every node has already.
# shellcheck disable=SC2086
"$KIND" load docker-image --name "$cluster" "$stage_image" "$operator_image" "$ui_image" $extra_images
done_step

step "helm upgrade --install $release (profile $profile, namespace $namespace)"
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace "$namespace" pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
# Helm installs a chart's crds/ once and never upgrades them: apply them first, so a `make up`
# on an existing cluster also brings new status fields (the API server prunes unknown ones).
kubectl apply --server-side --force-conflicts -f helm/claimops/crds/ >/dev/null
"$HELM" --kube-context "kind-$cluster" upgrade --install "$release" helm/claimops -n "$namespace" \
  -f helm/claimops/values-kind.yaml $([[ $profile == embedded ]] && echo "-f helm/claimops/values-embedded.yaml") \
  --set stageImage.tag="$tag" --set operator.image.tag="$tag" --set ui.image.tag="$tag" \
  --set "operator.watchNamespaces={$namespace}" $chart_images --wait --timeout 10m
if [[ $profile != embedded ]]; then
  # The bucket Job is part of the install: a failed one is a failed `make up`.
  if ! kubectl -n "$namespace" wait --for=condition=complete job -l app.kubernetes.io/component=minio-bucket --timeout=5m; then
    kubectl -n "$namespace" logs -l app.kubernetes.io/component=minio-bucket --tail=30 >&2 || true
    echo "make up: the MinIO bucket Job did not complete" >&2
    exit 1
  fi
fi
done_step

step "Ready"
if [[ $offline == 1 ]]; then
  echo "      local stand-ins (no registry answered):"
  printf '        %s\n' "$node_image (for kindest/node)" "$python_image (for python:3.11-slim)" \
    "$postgres_image (for postgres; PostgreSQL 15)" "$minio_image (for minio/minio)"
fi
cat <<TXT

ClaimOps is up in $((SECONDS - started)) s (kubectl context kind-$cluster, namespace $namespace):
  UI      http://localhost:3001   user admin, password:
          kubectl -n $namespace get secret $release-ui-admin -o jsonpath='{.data.password}' | base64 -d
  API     http://localhost:8000/docs
  MLflow  http://localhost:5000
  kubectl and helm: $KUBECTL, $HELM

Next (README "The journey with kubectl"):
  kubectl config use-context kind-$cluster
  kubectl -n $namespace apply -f manifests/examples/pipelinerun.yaml
  kubectl -n $namespace get cpr -w
  kubectl -n $namespace patch cpr demo-3f9c2ab --type merge -p '{"spec":{"continueToCD":true}}'
  kubectl -n $namespace patch cpr demo-3f9c2ab --type merge --as=reviewer --as-group=claimops:operators \\
    -p '{"spec":{"approval":{"decision":"Approved"}}}'   # an approver, not the submitter
  helm test $release -n $namespace
  make e2e     # the end-to-end tests against this cluster
  make down    # delete the cluster
TXT
