# Packaging targets: images, the kind quick start (mk/kind/), its e2e tests, CRD sync and the
# rendered install manifest.
# Included from the Makefile (`include mk/packaging.mk`); uses SHELL and PY from there.
KIND_CLUSTER ?= claimops
NAMESPACE ?= claimops
RELEASE ?= claimops
export KIND_CLUSTER NAMESPACE RELEASE

.PHONY: images up down e2e chaos sync-crds render-manifests

images: ## build the stage, operator and UI images (and local stand-ins where no registry answers)
	@bash mk/kind/images.sh >/dev/null

up: ## the main job: kind cluster + images + chart; prints the URLs and the next commands
	@bash mk/kind/up.sh

down: ## delete the kind cluster
	@eval "$$(bash mk/kind/tools.sh)" && "$$KIND" delete cluster --name $(KIND_CLUSTER)

e2e: venv system-packages ## the end-to-end tests on the kind cluster `make up` made (quick fault experiments last)
	$(PY) -m pytest tests/e2e -m "not chaos_full" $(PYTEST_ARGS)

chaos: venv system-packages ## every fault experiment on the kind cluster and the load test (slow: MLflow, PostgreSQL, MinIO, node restart, helm upgrade, 20 runs)
	$(PY) -m pytest tests/e2e -m chaos -s $(PYTEST_ARGS)

sync-crds: ## copy crds/ (the source of truth) into the chart
	cp crds/pipelineruns.claimops.io.yaml crds/modeldeployments.claimops.io.yaml helm/claimops/crds/

render-manifests: sync-crds ## re-render manifests/install/claimops.yaml (uses the cached helm: make cluster-binaries)
	$(PY) -m tests.cluster.test_chart render > manifests/install/claimops.yaml
