# Packaging targets (issue #6): images, the kind quick start, CRD sync and the rendered manifest.
# Included from the Makefile (`include mk/packaging.mk`); uses SHELL and PY from there.
KIND_CLUSTER ?= claimops
NAMESPACE ?= claimops
RELEASE ?= claimops
IMAGE_TAG ?= 0.1.0
STAGE_IMAGE ?= claimops/stages:$(IMAGE_TAG)
OPERATOR_IMAGE ?= claimops/operator:$(IMAGE_TAG)
UI_IMAGE ?= claimops/ui:$(IMAGE_TAG)
HELM_VALUES ?= -f helm/claimops/values-kind.yaml
# helm and kubectl: from PATH, else the cached test binaries (make cluster-binaries).
CACHED_BIN := $(or $(CACHE),$(HOME)/.cache/claimops)/bin
HELM ?= $(shell command -v helm 2>/dev/null || ls $(CACHED_BIN)/helm-*/helm 2>/dev/null | head -1)
KUBECTL ?= $(shell command -v kubectl 2>/dev/null || ls $(CACHED_BIN)/kube-*/kubectl 2>/dev/null | head -1)
KIND ?= kind

.PHONY: images require-docker require-kind up down sync-crds render-manifests

# Stop at once, naming everything that is missing (not just the first thing).
require-docker:
	@missing=""; \
	command -v docker >/dev/null 2>&1 || missing="$$missing\n  - docker (the client): https://docs.docker.com/engine/install/"; \
	if command -v docker >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then \
	  missing="$$missing\n  - a Docker engine: the docker client is installed but no engine answers (docker info failed)"; fi; \
	if [ -n "$$missing" ]; then printf "make $(MAKECMDGOALS): cannot build images, missing:$$missing\n" >&2; exit 1; fi

require-kind:
	@missing=""; \
	command -v docker >/dev/null 2>&1 || missing="$$missing\n  - docker (the client): https://docs.docker.com/engine/install/"; \
	if command -v docker >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then \
	  missing="$$missing\n  - a Docker engine: the docker client is installed but no engine answers (docker info failed)"; fi; \
	command -v $(KIND) >/dev/null 2>&1 || missing="$$missing\n  - kind: go install sigs.k8s.io/kind@v0.30.0 (https://kind.sigs.k8s.io)"; \
	[ -n "$(HELM)" ] || missing="$$missing\n  - helm: install Helm 3, or run make cluster-binaries"; \
	[ -n "$(KUBECTL)" ] || missing="$$missing\n  - kubectl: install kubectl, or run make cluster-binaries"; \
	if [ -n "$$missing" ]; then printf "make $(MAKECMDGOALS): cannot start the kind cluster, missing:$$missing\n" >&2; exit 1; fi

images: require-docker ## build the stage, operator and UI images (Docker engine needed)
	docker build -f stage-images/Dockerfile -t $(STAGE_IMAGE) .
	docker build -f operator/Dockerfile -t $(OPERATOR_IMAGE) .
	docker build -f frontend/Dockerfile -t $(UI_IMAGE) .

up: require-kind ## the main job: kind cluster + images + chart; prints the URLs and the next commands
	@$(KIND) get clusters 2>/dev/null | grep -qx $(KIND_CLUSTER) || $(KIND) create cluster --name $(KIND_CLUSTER) --config manifests/kind-config.yaml --wait 120s
	$(MAKE) --no-print-directory images
	$(KIND) load docker-image --name $(KIND_CLUSTER) $(STAGE_IMAGE) $(OPERATOR_IMAGE) $(UI_IMAGE)
	$(KUBECTL) --context kind-$(KIND_CLUSTER) create namespace $(NAMESPACE) --dry-run=client -o yaml | $(KUBECTL) --context kind-$(KIND_CLUSTER) apply -f -
	$(KUBECTL) --context kind-$(KIND_CLUSTER) label namespace $(NAMESPACE) pod-security.kubernetes.io/enforce=restricted --overwrite
	$(HELM) --kube-context kind-$(KIND_CLUSTER) upgrade --install $(RELEASE) helm/claimops -n $(NAMESPACE) $(HELM_VALUES) \
	  --set stageImage.tag=$(IMAGE_TAG) --set operator.image.tag=$(IMAGE_TAG) --set ui.image.tag=$(IMAGE_TAG) --wait --timeout 10m
	$(KUBECTL) --context kind-$(KIND_CLUSTER) -n $(NAMESPACE) wait --for=condition=complete job -l app.kubernetes.io/component=minio-bucket --timeout=5m || true
	@echo
	@echo "ClaimOps is up (kubectl context kind-$(KIND_CLUSTER), namespace $(NAMESPACE)):"
	@echo "  UI      http://localhost:3001   (login admin; password: kubectl -n $(NAMESPACE) get secret $(RELEASE)-ui-admin -o jsonpath='{.data.password}' | base64 -d)"
	@echo "  API     http://localhost:8000"
	@echo "  MLflow  http://localhost:5000"
	@echo "Next:"
	@echo "  kubectl -n $(NAMESPACE) apply -f manifests/examples/pipelinerun.yaml"
	@echo "  kubectl -n $(NAMESPACE) get cpr -w"
	@echo "  kubectl -n $(NAMESPACE) patch cpr demo-3f9c2ab --type merge -p '{\"spec\":{\"continueToCD\":true}}'"
	@echo "  kubectl -n $(NAMESPACE) patch cpr demo-3f9c2ab --type merge -p '{\"spec\":{\"approval\":{\"decision\":\"Approved\"}}}'"
	@echo "  helm test $(RELEASE) -n $(NAMESPACE)"

down: ## delete the kind cluster
	@command -v $(KIND) >/dev/null 2>&1 || { echo "make down: kind is missing (https://kind.sigs.k8s.io); nothing to delete without it." >&2; exit 1; }
	$(KIND) delete cluster --name $(KIND_CLUSTER)

sync-crds: ## copy crds/ (the source of truth) into the chart
	cp crds/pipelineruns.claimops.io.yaml crds/modeldeployments.claimops.io.yaml helm/claimops/crds/

render-manifests: sync-crds ## re-render manifests/install/claimops.yaml (uses the cached helm: make cluster-binaries)
	$(PY) -m tests.cluster.test_chart render > manifests/install/claimops.yaml
