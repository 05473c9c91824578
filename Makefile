# The README's commands. Everything installs into .venv so a fresh clone needs nothing else.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo demo-llm bench lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/tuner demo

demo-llm: $(STAMP)
	$(BIN)/tuner demo --llm

bench: $(STAMP)
	$(BIN)/python -m pytest -q -s -m 'benchmark or slow' -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check tuner tests locustfiles
	$(BIN)/ruff format --check tuner tests locustfiles
	$(BIN)/mypy tuner

clean:
	rm -rf $(VENV) .pytest_cache
