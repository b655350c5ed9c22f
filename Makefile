# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: venv demo test lint typecheck unit bench clean

$(BIN)/syncd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/syncd

demo: venv
	$(BIN)/syncd demo

lint: venv
	$(BIN)/ruff check syncd cmdb_simulator tests bench
	$(BIN)/ruff format --check syncd cmdb_simulator tests bench
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

# The suite mostly waits (subprocesses, long polls, pacing), so more workers than cores
# pay off; tests that must share a worker are grouped in tests/conftest.py.
WORKERS ?= 4

unit: venv
	$(BIN)/pytest -q -n $(WORKERS) --dist loadgroup

test: lint typecheck unit

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
