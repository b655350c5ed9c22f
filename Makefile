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
# pay off; tests that must share a worker are grouped in tests/conftest.py, which also
# orders the work (longest first: xdist's reordering by group size is turned off).
WORKERS ?= 5

# Extra pytest options, e.g. `make test PYTEST_ARGS=--durations=20`.
PYTEST_ARGS ?=

# Bytecode caches (`__pycache__`, git-ignored) are written even where the environment says
# not to (PYTHONDONTWRITEBYTECODE): otherwise every worker, and every `syncd` process the
# suite starts, compiles the same sources again (and pytest rewrites the test modules again).
# One collection first writes them once, instead of every worker at the same moment (a
# collection error is reported by the run after it).
unit: venv
	-env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -qq --collect-only >/dev/null 2>&1
	env -u PYTHONDONTWRITEBYTECODE \
	    $(BIN)/pytest -q -n $(WORKERS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

# The linters and mypy run beside the suite (which mostly waits), each one's output in one
# piece; any of them failing fails `make test`.
test: venv
	$(MAKE) --no-print-directory -j3 --output-sync=target lint typecheck unit

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
