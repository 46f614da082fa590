# Two commands: `make demo` and `make test`. Each builds .venv first when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv demo test bench lint clean lab notebooks

# The first time, pip downloads the package's dependencies and the development tools
# (JupyterLab, Playwright, pytest, ...) and lists each as it goes: a few minutes. After a
# change to pyproject.toml it lists only what it fetches, not what is already installed.
$(STAMP): SHELL := /bin/bash
$(STAMP): pyproject.toml
	@echo "Setting up $(VENV) (the first time takes a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	set -o pipefail; $(BIN)/python -m pip install --progress-bar off -e ".[dev]" \
		| sed '/^Requirement already satisfied/d'
	touch $(STAMP)
	@echo "$(VENV) is ready. Its commands are in $(BIN)/ (athena-orch, jupyter, pytest);" \
		"'source $(BIN)/activate' puts them on your PATH."

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/athena-orch demo

test: $(STAMP)
	$(BIN)/python -m pytest --cov --cov-report=term-missing:skip-covered --cov-fail-under=80 tests
	$(BIN)/python -m pytest --nbval --nbval-sanitize-with notebooks/sanitize.cfg notebooks

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

# Re-run every notebook and store its outputs; commit them after a behaviour or data change.
notebooks: $(STAMP)
	cd notebooks && ../$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.record_timing=False --ExecutePreprocessor.store_widget_state=False *.ipynb

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/scale_out.py
	$(BIN)/python benchmarks/worker.py
	$(BIN)/python benchmarks/learning.py

lint: $(STAMP)
	$(BIN)/ruff check athena_orch tests benchmarks notebooks

clean:
	rm -rf $(VENV) .pytest_cache .coverage orch.duckdb orch.duckdb.wal orch_report.html test-artifacts
