# Handoff. The two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := .handoff/bin
K8S_VERSION := $(shell awk '$$1 == "k8s.io/kubernetes" {print $$2}' controlplane/go.mod)
K8S_MINOR := $(word 2,$(subst ., ,$(K8S_VERSION)))
ETCD_VERSION := $(shell awk '$$1 == "go.etcd.io/etcd/server/v3" {print $$2}' controlplane/go.mod)
VERSION_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(K8S_MINOR) \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/client-go/pkg/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$(K8S_MINOR)
STAMP := $(BIN)/.built-$(K8S_VERSION)-$(ETCD_VERSION)

.PHONY: help demo test unit integration smoke lint typecheck controlplane venv dev-up dev-down clean bench

help:
	@echo "make demo          start the local environment and walk through every tier"
	@echo "make test          install what the tests need and run them all"
	@echo "make controlplane  build etcd, kube-apiserver and kubectl $(K8S_VERSION) from Go modules"

# --- the local control plane, built from the official Go modules --------------------------------
controlplane: $(STAMP)

$(STAMP): controlplane/go.mod controlplane/go.sum
	@mkdir -p $(BIN)
	cd controlplane && go build -trimpath -ldflags "$(VERSION_LDFLAGS)" -o ../$(BIN)/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
	cd controlplane && go build -trimpath -ldflags "$(VERSION_LDFLAGS)" -o ../$(BIN)/kubectl k8s.io/kubernetes/cmd/kubectl
	cd controlplane && go build -trimpath -o ../$(BIN)/etcd go.etcd.io/etcd/server/v3
	@rm -f $(BIN)/.built-*
	@touch $@

# --- Python ---------------------------------------------------------------------------------
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

# --- the two commands -------------------------------------------------------------------------
demo: venv controlplane
	$(VENV)/bin/handoff dev up
	$(PY) examples/demo.py

test: venv controlplane
	bash scripts/services.sh
	$(MAKE) --no-print-directory lint typecheck
	$(PY) -m pytest
	$(MAKE) --no-print-directory smoke

lint: venv
	$(VENV)/bin/ruff check operator tests examples benchmarks
	$(VENV)/bin/ruff format --check operator tests examples benchmarks
	$(VENV)/bin/lint-imports

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(PY) -m pytest tests/unit

integration: venv controlplane
	$(PY) -m pytest tests/integration

# The contract's conformance check, from outside, against a fresh `handoff dev up`.
smoke: venv controlplane
	@test -f ../shared/conformance/smoke.sh || { echo "../shared/conformance/smoke.sh is missing"; exit 1; }
	-HANDOFF_DEV_DIR=.handoff/smoke $(VENV)/bin/handoff dev down --quiet
	rm -rf .handoff/smoke
	HANDOFF_DEV_DIR=.handoff/smoke $(VENV)/bin/handoff dev up --quiet
	HANDOFF_ENV=.handoff/smoke/env KUBECTL=$(BIN)/kubectl bash ../shared/conformance/smoke.sh; \
	  status=$$?; HANDOFF_DEV_DIR=.handoff/smoke $(VENV)/bin/handoff dev down --quiet; exit $$status

# Benchmarks print a table and compare with a baseline measured in the same run. Never in `make test`.
bench: venv controlplane
	$(VENV)/bin/handoff dev up --quiet
	$(PY) benchmarks/resume_latency.py

dev-up: venv controlplane
	$(VENV)/bin/handoff dev up

dev-down: venv
	$(VENV)/bin/handoff dev down

clean:
	-$(VENV)/bin/handoff dev down
	rm -rf .handoff/dev .handoff/smoke $(VENV)
