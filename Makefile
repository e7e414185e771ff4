# opc: the template repository's own tasks. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEST   ?= /tmp/acme-platform

.PHONY: help render test tools bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/opc: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

render: $(BIN)/opc ## render a company repository with the default answers into $(DEST)
	$(BIN)/opc new $(DEST) --defaults

tools: ## install the system tools the tests run for real (kubectl's kustomize, git, ...)
	scripts/install-tools

test: $(BIN)/opc tools ## install what the tests need, then run the whole suite
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/pytest -n auto

bench: $(BIN)/opc ## render and validation benchmark (prints a table)
	$(BIN)/python bench/render_bench.py

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache
