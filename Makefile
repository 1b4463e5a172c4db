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
HELM_VERSION := $(shell grep -oE 'helm\.sh/helm/v3 v[0-9.]+' tools/helm/go.mod | cut -d' ' -f2)
HELM_K8S_MINOR := $(word 2,$(subst ., ,$(shell awk '$$1 == "k8s.io/client-go" {print $$2}' tools/helm/go.mod)))
HELM_LDFLAGS := -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_K8S_MINOR) \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_K8S_MINOR)
HELM_STAMP := $(BIN)/.helm-$(HELM_VERSION)
PROMETHEUS_VERSION := $(shell grep -oE 'github\.com/prometheus/prometheus v[0-9.]+' tools/promql/go.mod | cut -d' ' -f2)
PROMQL_STAMP := $(BIN)/.promql-check-$(PROMETHEUS_VERSION)

.PHONY: help demo test test-durations unit integration smoke lint typecheck audit controlplane helm promql-check chart-lint chart-crds venv dev-up dev-down clean bench reliability mutation

help:
	@echo "make demo          start the local environment and walk through every tier"
	@echo "make test          install what the tests need and run them all"
	@echo "make controlplane  build etcd, kube-apiserver and kubectl $(K8S_VERSION) from Go modules"
	@echo "make helm          build helm $(HELM_VERSION) from its Go module (chart lint and tests)"
	@echo "make mutation      mutation testing of the decision core (domain/), score per file"

# --- the local control plane, built from the official Go modules --------------------------------
controlplane: $(STAMP)

$(STAMP): controlplane/go.mod controlplane/go.sum
	@mkdir -p $(BIN)
	@echo "Building etcd, kube-apiserver and kubectl $(K8S_VERSION) from the official Go modules into $(BIN),"
	@echo "once per Kubernetes version: about 5 minutes on 2 cores with empty Go caches (module downloads"
	@echo "included), a minute or two with warm ones. It says every 30 seconds that it is still at work."
	cd controlplane && bash ../scripts/progress.sh "building kube-apiserver (1 of 3, the longest)" go build -trimpath -ldflags "$(VERSION_LDFLAGS)" -o ../$(BIN)/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
	cd controlplane && bash ../scripts/progress.sh "building kubectl (2 of 3)" go build -trimpath -ldflags "$(VERSION_LDFLAGS)" -o ../$(BIN)/kubectl k8s.io/kubernetes/cmd/kubectl
	cd controlplane && bash ../scripts/progress.sh "building etcd (3 of 3)" go build -trimpath -o ../$(BIN)/etcd go.etcd.io/etcd/server/v3
	@rm -f $(BIN)/.built-*
	@touch $@

# --- helm, built from its official Go module, for `helm lint` and the chart's tests -------------
helm: $(HELM_STAMP)

$(HELM_STAMP): tools/helm/go.mod tools/helm/go.sum
	@mkdir -p $(BIN)
	@echo "Building helm $(HELM_VERSION) from its Go module into $(BIN) for the chart's tests: with the PromQL"
	@echo "checker, 4 to 9 minutes on a busy 2-core machine with empty Go caches, seconds after that."
	cd tools/helm && CGO_ENABLED=0 bash ../../scripts/progress.sh "building helm" go build -trimpath -ldflags "-s -w $(HELM_LDFLAGS)" -o ../../$(BIN)/helm helm.sh/helm/v3/cmd/helm
	@rm -f $(BIN)/.helm-*
	@touch $@

# Prometheus's own PromQL parser, for the tests of the chart's alerts and dashboard.
promql-check: $(PROMQL_STAMP)

$(PROMQL_STAMP): tools/promql/go.mod tools/promql/go.sum tools/promql/main.go
	@mkdir -p $(BIN)
	@echo "Building Prometheus's PromQL parser ($(PROMETHEUS_VERSION)) into $(BIN)/promql-check for the chart's tests."
	cd tools/promql && CGO_ENABLED=0 bash ../../scripts/progress.sh "building promql-check" go build -trimpath -o ../../$(BIN)/promql-check .
	@rm -f $(BIN)/.promql-check-*
	@touch $@

chart-lint: helm
	$(BIN)/helm lint --strict charts/handoff

# The chart ships copies of crds/ (helm reads nothing outside the chart); a unit test checks them.
chart-crds:
	cp crds/*.yaml charts/handoff/files/crds/
	cp crds/admission/*.yaml charts/handoff/files/admission/
	cp crds/thirdparty/*.yaml charts/handoff/files/thirdparty/

# --- Python ---------------------------------------------------------------------------------
venv: $(VENV)/.installed

# The dev install carries the framework extras (handoff.integrations is type-checked and tested);
# the core install (`pip install kube-handoff`, the image) carries none of them. Comma-separated.
FRAMEWORKS := pydantic-ai,langgraph,openai-agents

$(VENV)/.installed: pyproject.toml
	@echo "Installing Handoff and its Python dependencies into $(VENV) (about a minute the first time)."
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,$(FRAMEWORKS)]'
	@touch $@

# --- the two commands -------------------------------------------------------------------------
# The services first (apt may ask for a sudo password), then the builds, then the environment.
demo:
	@echo "make demo: installs Redis and PostgreSQL when missing, builds the control plane once (about"
	@echo "5 minutes on 2 cores the first time), starts the local environment and walks through every tier."
	bash scripts/services.sh redis postgresql
	@$(MAKE) --no-print-directory -s venv controlplane
	$(VENV)/bin/handoff dev up
	$(PY) examples/mcp_session.py
	$(PY) examples/demo.py

# The tests on TEST_WORKERS pytest-xdist workers, a file to a worker (its module fixtures start
# once; tests/file_durations.py hands them out longest first, by tests/durations.json). Each worker
# starts its own control plane, Redis, PostgreSQL and operator on free ports. The integration
# tests mostly wait (on the API server, the operator, a hold to pass), so 4 workers beat 2 on 2
# cores; TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 4
PARALLEL := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: venv controlplane helm promql-check
	bash scripts/services.sh
	$(MAKE) --no-print-directory lint typecheck audit
	$(PY) -m pytest $(PARALLEL)
	$(MAKE) --no-print-directory smoke

# Each run prints its 15 slowest test files and writes them all to .handoff/test-durations.json;
# this keeps them in tests/durations.json, which orders the files of `make test` (longest first).
# After a full `make test` on a quiet machine, or a file run alone (`-p no:xdist`) to add it.
test-durations: venv
	$(PY) -m tests.file_durations

lint: venv
	$(VENV)/bin/ruff check operator tests examples benchmarks reliability scripts
	$(VENV)/bin/ruff format --check operator tests examples benchmarks reliability scripts
	$(VENV)/bin/lint-imports

typecheck: venv
	$(VENV)/bin/mypy

# Known vulnerabilities in the installed dependencies: pip-audit, with a fallback where no
# vulnerability service answers (scripts/audit.py says which packages it could check).
audit: venv
	$(PY) scripts/audit.py

unit: venv
	$(PY) -m pytest tests/unit

integration: venv controlplane helm promql-check
	$(PY) -m pytest $(PARALLEL) tests/integration

# The contract's conformance check, from outside, against a fresh `handoff dev up`.
smoke: venv controlplane
	@test -f ../shared/conformance/smoke.sh || { echo "../shared/conformance/smoke.sh is missing"; exit 1; }
	-HANDOFF_DEV_DIR=.handoff/smoke $(VENV)/bin/handoff dev down --quiet
	rm -rf .handoff/smoke
	HANDOFF_DEV_DIR=.handoff/smoke $(VENV)/bin/handoff dev up --quiet
	HANDOFF_ENV=.handoff/smoke/env KUBECTL=$(BIN)/kubectl bash ../shared/conformance/smoke.sh; \
	  status=$$?; HANDOFF_DEV_DIR=.handoff/smoke $(VENV)/bin/handoff dev down --quiet; exit $$status

# Benchmarks print a table and compare with a baseline measured in the same run. Never in `make test`.
# They run their own control plane in .handoff/bench; OPA is built from its Go module for the
# classification baseline (benchmarks/opa), like the control plane, once per OPA version.
# go.mod names OPA on a one-line `require` (field 2 is the module) or inside `require ( ... )`.
OPA_VERSION := $(shell awk '$$1 == "require" && $$2 == "github.com/open-policy-agent/opa" {print $$3} $$1 == "github.com/open-policy-agent/opa" {print $$2}' benchmarks/opa/go.mod)
OPA_STAMP := $(BIN)/.opa-classify-$(OPA_VERSION)

bench: venv controlplane $(VENV)/.bench-installed $(OPA_STAMP)
	$(PY) benchmarks/run.py

$(VENV)/.bench-installed: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	@touch $@

$(OPA_STAMP): benchmarks/opa/go.mod benchmarks/opa/go.sum benchmarks/opa/main.go
	@mkdir -p $(BIN)
	cd benchmarks/opa && go build -trimpath -o ../../$(BIN)/opa-classify .
	@rm -f $(BIN)/.opa-classify-*
	@touch $@

# Mutation testing of the decision core (operator/handoff/domain/) with the unit tests: mutmut
# changes the code one small way at a time and the tests must notice. Prints the score per file
# and each surviving mutant; fails when any mutant survives that is not listed, with a reason, in
# tests/mutation/equivalent.txt (those change nothing a caller can see), or when that list is out
# of date. See docs/mutation.md for its run time on 2 cores; `make mutation FILES="classify.py
# decide.py"` for some files only. Never in `make test`.
mutation: venv $(VENV)/.mutation-installed
	$(PY) scripts/mutation.py $(FILES)

$(VENV)/.mutation-installed: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev,mutation]'
	@touch $@

# Load and faults on a private control plane, Redis and PostgreSQL (about 5 minutes), then the
# independent checker; see docs/reliability.md. Never in `make test`.
reliability: venv controlplane
	bash scripts/services.sh
	$(PY) -m reliability.run

dev-up: venv controlplane
	$(VENV)/bin/handoff dev up

dev-down: venv
	$(VENV)/bin/handoff dev down

clean:
	-$(VENV)/bin/handoff dev down
	rm -rf .handoff/dev .handoff/smoke $(VENV)
