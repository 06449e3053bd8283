# Two commands a new user needs (see README.md):
#   make demo   start a local Instant-compatible server and run the quick start against it
#   make test   lint, type-check and test everything (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The shared conformance recording lives beside the repository (see docs/testing.md).
SHARED ?= ../shared
# What Binder installs (binder/requirements.txt), in a venv of its own: the tests run
# binder/start and JupyterLab from it (tests/notebook/test_binder.py, test_browser.py).
BINDER_VENV ?= build/binder-venv
# The browser check drives Debian's Chromium when there is one (see the chromium target).
CHROMIUM ?= /usr/bin/chromium
PACKAGE_SOURCES := $(shell find instantdb instantdb_local instantdb_notebook -name '*.py' -o -name '*.tmpl')

.PHONY: demo test lint typecheck pytest bench bench-quick conformance clean binder-venv chromium

$(VENV)/.installed-local: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[local,notebook]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,browser]'
	touch $(VENV)/.installed-local $@

# The repository is installed as Binder installs it (not editable), so it is reinstalled
# when its sources change.
$(BINDER_VENV)/.installed: binder/requirements.txt pyproject.toml $(PACKAGE_SOURCES)
	$(PYTHON) -m venv $(BINDER_VENV)
	$(BINDER_VENV)/bin/python -m pip install -q --upgrade pip
	$(BINDER_VENV)/bin/python -m pip install -q -r binder/requirements.txt
	$(BINDER_VENV)/bin/python -m pip install -q --no-deps --force-reinstall .
	touch $@

binder-venv: $(BINDER_VENV)/.installed

# The browser check's Chromium, found in this order: $(CHROMIUM) (Debian's package);
# Debian's package installed when we may (root with apt-get, as in CI); a Chromium or
# Chrome on PATH; Playwright's own build, downloaded to ~/.cache/ms-playwright (a user's
# machine without root). The path goes to build/chromium-path for `make pytest`.
chromium:
	@mkdir -p build; \
	if [ -x "$(CHROMIUM)" ]; then found="$(CHROMIUM)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
			&& found="$(CHROMIUM)"; \
	else \
		found="$$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"; \
	fi; \
	if [ -z "$$found" ]; then \
		echo "No system Chromium: downloading Playwright's (set CHROMIUM=/path to use another)." >&2; \
		$(BIN)/python -m playwright install chromium >&2 \
			&& found="$$($(BIN)/python -c 'from playwright.sync_api import sync_playwright as p; b = p().start(); print(b.chromium.executable_path); b.stop()')"; \
	fi; \
	if [ -z "$$found" ] || [ ! -x "$$found" ]; then \
		echo "The browser check needs Chromium: apt-get install chromium, or set CHROMIUM=/path/to/chromium." >&2; \
		exit 1; \
	fi; \
	echo "$$found" > build/chromium-path

demo: $(VENV)/.installed-local
	$(BIN)/instantdb-local run --data .instant-local -- $(BIN)/python examples/quickstart.py

test: lint typecheck pytest bench-quick

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# pytest exits 5 when it collects no tests; that is not a failure of the suite.
pytest: $(VENV)/.installed-dev $(BINDER_VENV)/.installed chromium
	INSTANTDB_BINDER_VENV=$(abspath $(BINDER_VENV)) INSTANTDB_CHROMIUM="$$(cat build/chromium-path)" \
		$(BIN)/python -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

bench-quick: $(VENV)/.installed-dev
	$(BIN)/python bench/run.py --quick

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run.py

conformance: $(VENV)/.installed-dev
	$(BIN)/python $(SHARED)/conformance/record.py $(abspath $(BIN))/python /tmp/instantdb-conformance.jsonl
	$(BIN)/python $(SHARED)/conformance/compare.py $(SHARED)/conformance/vectors/official.jsonl /tmp/instantdb-conformance.jsonl --only-diff --ignore-header user-agent

clean:
	rm -rf $(VENV) $(BINDER_VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
