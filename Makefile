# Two commands a new user needs (see README.md):
#   make demo   start a local Instant-compatible server and run the quick start against it
#   make test   lint, type-check and test everything (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The shared conformance recording lives beside the repository (see docs/testing.md).
SHARED ?= ../shared

.PHONY: demo test lint typecheck pytest bench bench-quick conformance clean

$(VENV)/.installed-local: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[local,notebook]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(VENV)/.installed-local $@

demo: $(VENV)/.installed-local
	$(BIN)/instantdb-local run --data .instant-local -- $(BIN)/python examples/quickstart.py

test: lint typecheck pytest bench-quick

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# pytest exits 5 when it collects no tests; that is not a failure of the suite.
pytest: $(VENV)/.installed-dev
	$(BIN)/python -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

bench-quick: $(VENV)/.installed-dev
	$(BIN)/python bench/run.py --quick

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run.py

conformance: $(VENV)/.installed-dev
	$(BIN)/python $(SHARED)/conformance/record.py $(abspath $(BIN))/python /tmp/instantdb-conformance.jsonl
	$(BIN)/python $(SHARED)/conformance/compare.py $(SHARED)/conformance/vectors/official.jsonl /tmp/instantdb-conformance.jsonl --only-diff --ignore-header user-agent

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
