# The checks CI runs are the ones a developer runs: `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.keel-installed
DEVSTAMP = $(VENV)/.keel-dev-installed

.PHONY: demo demo-torch test lint bench screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEVSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $@

demo: $(STAMP)  ## init a project in a temp folder, ingest Adult, search, register, alias, lineage
	$(BIN)/keel demo

demo-torch: $(STAMP)  ## act three: a PyTorch CNN on 8x8 digits attacked, hardened, exported to int8, served (installs keel[torch])
	$(BIN)/python -m pip install --quiet -e '.[torch]'
	$(BIN)/keel demo --act torch

test: $(DEVSTAMP)  ## lint, the layer contract, mypy and the whole suite (slow tests included)
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/lint-imports
	$(BIN)/mypy src/keel
	$(BIN)/python -m pytest -q --ignore=tests/ray $(PYTEST_ARGS)
	# the two-node Ray cluster tests in a process of their own: Ray Data cannot start its
	# actors on a cluster this process joins after an earlier Ray session of its own
	$(BIN)/python -m pytest -q tests/ray $(PYTEST_ARGS)

screenshots: $(DEVSTAMP)  ## the README's pictures of keel ui, taken by the browser tests
	KEEL_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -q tests/ui/test_browser.py -k screenshots

lint: $(DEVSTAMP)
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)
	$(BIN)/lint-imports
	$(BIN)/mypy src/keel

bench: $(DEVSTAMP)  ## benchmarks against MLflow (installs keel[bench]); prints medians and ratios
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache
