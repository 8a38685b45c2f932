# Two commands do all the set-up: `make demo` (venv + install + demo) and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/demo.yaml

.PHONY: install demo test lint typecheck pytest clean

$(BIN)/stratocast: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The local CPU build first: the project's torch>=2.4 is then satisfied and pip
	# never downloads a multi-GB CUDA wheel on a CPU-only machine.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/stratocast

install: $(BIN)/stratocast

demo: install
	$(BIN)/stratocast demo --config $(CONFIG)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest -q

test: lint typecheck pytest

clean:
	rm -rf $(VENV) runs .cache
