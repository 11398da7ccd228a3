# ClaimOps developer entry points. `make test` works on a fresh machine: it installs what the
# tests need (Debian packages, a virtualenv, the control-plane binaries) and runs every layer.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CACHE ?= $(HOME)/.cache/claimops
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# System packages the test layers run for real: PostgreSQL (MLflow's backend store) and
# Chromium (browser tests).
APT_PACKAGES := postgresql chromium
PYTEST_ARGS ?=
# `make test` runs two pytest workers (pytest-xdist), each with its own control plane, MLflow
# and model servers; a test file (the browser layer: all of it) stays on one worker, so module
# fixtures run once; the longest units start first (tests/harness/xdist_order.py).
# PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 2

export UV_CACHE_DIR := $(CACHE)/uv
export UV_LINK_MODE := copy

.PHONY: help setup system-packages venv client-venvs cluster-binaries test test-unit lint bench cluster-up cluster-down

# images, up (kind quick start), down, sync-crds, render-manifests
include mk/packaging.mk

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

setup: system-packages venv cluster-binaries client-venvs ## install everything the tests need

system-packages: ## Debian packages (installed only when missing)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	test -x $(UV) || $(VENV)/bin/pip install -q uv==0.13.8
	$(UV) pip install --python $(PY) -q -c constraints.txt -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## the virtualenv with every extra (pinned by constraints.txt)

client-venvs: venv ## third-party tools with pins of their own (the KServe SDK, MLServer), cached by requirements
	$(PY) -m tests.harness.client_venvs

cluster-binaries: ## etcd, kube-apiserver, kube-controller-manager, kubectl, helm (cached by version)
	bash tests/cluster/build.sh

test: setup ## run every test layer (unit, service, cluster, browser)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-unit: venv ## only the pure tests
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: venv ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup ## print benchmark figures
	@for script in tests/bench/bench_*.py; do echo "== $$script"; $(PY) $$script; done

cluster-up: setup ## start a local control plane in the background; prints KUBECONFIG
	$(PY) -m tests.harness.control_plane up

cluster-down: ## stop the local control plane
	$(PY) -m tests.harness.control_plane down
