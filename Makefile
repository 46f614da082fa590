# Two commands: `make demo` and `make test`. Each builds .venv first when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv demo test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/athena-orch demo

test: $(STAMP)
	$(BIN)/python -m pytest --cov --cov-report=term-missing:skip-covered --cov-fail-under=80

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/run.py

lint: $(STAMP)
	$(BIN)/ruff check athena_orch tests
	$(BIN)/ruff format --check athena_orch tests

clean:
	rm -rf $(VENV) .pytest_cache .coverage orch.duckdb orch.duckdb.wal orch_report.html
