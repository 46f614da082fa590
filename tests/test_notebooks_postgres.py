"""The notebooks, run unchanged on PostgreSQL, print what they print on DuckDB.

nbval checks the committed outputs on the default in-memory DuckDB (``make test``'s second
step). Here every ``ao.connect()`` a notebook makes opens a fresh PostgreSQL schema
instead, and each code cell's text output is compared with the committed one through the
same sanitizers nbval uses (notebooks/sanitize.cfg).
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import nbformat
import pytest
from conftest import postgres_only
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

# Runs before the notebook's own cells: connect() without a database opens a fresh schema.
REDIRECT = """
import uuid, psycopg, athena_orch
_server, _connect = {server!r}, athena_orch.connect
def _fresh_postgres(path=None, **settings):
    if path is not None:
        return _connect(path, **settings)
    schema = "nb_" + uuid.uuid4().hex[:12]
    with psycopg.connect(_server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {{schema}}")
    return _connect(f"{{_server}}?options=-csearch_path%3D{{schema}}", **settings)
athena_orch.connect = _fresh_postgres
"""


def _sanitizers() -> list[tuple[re.Pattern, str]]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(NOTEBOOKS / "sanitize.cfg")
    own = [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]
    return [(re.compile(r"'postgresql://[^']*'"), "':memory:'"), *own]  # the manager's repr


def _texts(cell, sanitizers) -> list[str]:
    """A code cell's printed and displayed text, sanitized as nbval does."""
    out = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            text = output["text"]
        elif "data" in output and "text/plain" in output["data"]:
            text = output["data"]["text/plain"]
        else:
            continue
        for pattern, replacement in sanitizers:
            text = pattern.sub(replacement, text)
        out.append(text)
    return out


@postgres_only
@pytest.mark.parametrize("notebook", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_runs_on_postgres_with_the_same_output(notebook, database_url, postgres_server,
                                                        monkeypatch):
    monkeypatch.delenv("ATHENA_ORCH_DB", raising=False)
    stored = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    run = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    run.cells.insert(0, nbformat.v4.new_code_cell(REDIRECT.format(server=postgres_server)))
    NotebookClient(run, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    sanitizers = _sanitizers()
    ran = [c for c in run.cells[1:] if c.cell_type == "code"]
    kept = [c for c in stored.cells if c.cell_type == "code"]
    assert len(ran) == len(kept)
    differ = [(index, mine.source[:60], _texts(mine, sanitizers), _texts(theirs, sanitizers))
              for index, (mine, theirs) in enumerate(zip(ran, kept))
              if _texts(mine, sanitizers) != _texts(theirs, sanitizers)]
    assert not differ, differ
