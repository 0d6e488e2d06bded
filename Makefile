# The two commands of the README's quick start: `make demo` and `make test`.
# Each creates .venv (once) from pyproject.toml; the first run needs the package index (pip).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test reliability lint check bench dist clean mermaid docs-images

# Mermaid's browser bundle, for the tests that have Mermaid itself parse the plan's diagrams
# and for docs/img/plan.png: one file out of the npm package, pinned.
MERMAID_VERSION := 12.3.0
MERMAID_JS      := .cache/mermaid/mermaid.min.js

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m reconciler.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The reliability suites alone (they also run in `make test`); RELIABILITY_SCALE=10 runs ten
# times as many seeds and fuzzing examples. Counts go to .reconciler/reliability/summary.json
# (`make test` only prints them: it writes nothing outside pytest's temporary directories).
reliability: $(STAMP)
	RELIABILITY_SUMMARY=.reconciler/reliability/summary.json $(BIN)/python -m pytest -q tests/reliability

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench
	$(BIN)/ruff format --check reconciler tests bench
	$(BIN)/mypy

check: lint test

bench: $(STAMP)
	$(BIN)/python bench/plan_many.py

# The wheel to install elsewhere: `pipx install dist/newstore_reconciler-*.whl`.
dist: $(STAMP)
	$(BIN)/python -m build --wheel --no-isolation --outdir dist .

$(MERMAID_JS):
	mkdir -p .cache/mermaid
	cd .cache/mermaid && npm pack --silent mermaid@$(MERMAID_VERSION) > /dev/null \
	  && tar -xzf mermaid-$(MERMAID_VERSION).tgz package/dist/mermaid.min.js \
	  && mv package/dist/mermaid.min.js mermaid.min.js \
	  && rm -rf package mermaid-$(MERMAID_VERSION).tgz

mermaid: $(MERMAID_JS)

# The pictures the docs show, made by the tests' browser: the README's dashboard screenshot
# (docs/img/dashboard.png), the Mermaid example in docs/migrations.md and docs/img/plan.png.
docs-images: $(STAMP) $(MERMAID_JS)
	UPDATE_DOCS_IMAGES=1 $(BIN)/python -m pytest -q tests/test_dashboard.py tests/test_plan_pictures.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis dist build
