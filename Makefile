# Two commands: `make demo` and `make test`. Each builds .venv first when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv demo test bench lint clean lab notebooks

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

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

lint: $(STAMP)
	$(BIN)/ruff check athena_orch tests benchmarks notebooks

clean:
	rm -rf $(VENV) .pytest_cache .coverage orch.duckdb orch.duckdb.wal orch_report.html test-artifacts
