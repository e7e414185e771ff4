# opc: the template repository's own tasks. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEST   ?= /tmp/acme-platform
# Test data beside the checkout (charts at their pinned versions), used where it exists; without
# it, charts are pulled from their repositories.
SHARED_CHARTS := $(wildcard ../shared/charts)
CHART_ARGS := $(if $(SHARED_CHARTS),--chart-dir $(SHARED_CHARTS) --chart-substitute flux-operator-0.59.0=$(SHARED_CHARTS)/flux-operator-0.49.0)
# ...and schemas of custom resources, for a stand-in CRD where a CRD's source is out of reach.
SHARED_SCHEMAS := $(wildcard ../shared/crd-schemas)
SCHEMA_ARGS := $(if $(SHARED_SCHEMAS),--schema-dir $(SHARED_SCHEMAS))
# Where `make control-plane` runs etcd and kube-apiserver (a fresh directory each time).
PLANE ?= $(shell mktemp -d -t opc-control-plane.XXXXXX)

.PHONY: help render validate verify control-plane test tools bench converge clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/opc: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

render: $(BIN)/opc ## render a company repository with the default answers into $(DEST)
	$(BIN)/opc new $(DEST) --defaults
	@echo "check it with the charts at hand (../shared/charts, else pulled): make validate DEST=$(DEST)"

validate: $(BIN)/opc ## validate the repository in $(DEST) (charts rendered, pods judged); builds helm and vela once
	$(BIN)/opc tools install
	$(BIN)/opc validate $(DEST) $(CHART_ARGS)

verify: $(BIN)/opc ## apply the repository in $(DEST) to a local kube-apiserver (real CRDs, Pod Security admission)
	$(BIN)/opc tools install helm vela control-plane
	$(BIN)/opc verify $(DEST) $(CHART_ARGS) $(SCHEMA_ARGS)

control-plane: $(BIN)/opc ## run the tests' etcd and kube-apiserver in $(PLANE) until Ctrl-C (prints KUBECONFIG)
	$(BIN)/opc tools install control-plane
	$(BIN)/opc tools control-plane $(PLANE)

tools: $(BIN)/opc ## install the tools the tests run for real (scripts/install-tools)
	scripts/install-tools

test: $(BIN)/opc tools ## install what the tests need, then run the whole suite (slowest tests listed)
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/pytest -n auto --dist worksteal --durations=30

bench: $(BIN)/opc tools ## render, validation and footprint benchmark (prints tables)
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/python bench/render_bench.py

converge: $(BIN)/opc tools ## every fixture through opc verify, and every Flux cluster converged by the real controllers (tables)
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/python bench/control_plane.py

clean: ## remove the virtual environment and caches (built tools stay in ~/.cache/opc)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .tools
