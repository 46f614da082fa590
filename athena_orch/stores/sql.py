"""Named SQL: reads ``queries.sql`` and the numbered migrations beside it.

Each query is a block under ``-- name: <name>``; its parameters are the ``$name`` tokens
in it, so a caller's extra keys are dropped before binding (DuckDB rejects them).
PostgreSQL reads the same file, overridden query by query by ``postgres/queries.sql``
where the dialects differ, with ``$name`` rewritten to psycopg's ``%(name)s``; its schema
is ``postgres/NNN_name.sql``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from ..exceptions import StorageError, ValidationError, shown

_PARAM = re.compile(r"\$([a-z_][a-z0-9_]*)")
_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
DIALECTS = ("duckdb", "postgresql")


@dataclass(frozen=True)
class Query:
    name: str
    text: str
    params: tuple[str, ...]

    def bind(self, values: dict | None) -> dict:
        values = values or {}
        missing = [p for p in self.params if p not in values]
        if missing:
            raise ValidationError(f"query {self.name!r} needs parameters {missing}")
        return {p: values[p] for p in self.params}


def _strip_comments(block: str) -> str:
    lines = [ln for ln in block.splitlines() if not ln.lstrip().startswith("--")]
    return "\n".join(lines).strip()


def _read_queries(folder) -> dict[str, str]:
    parts = _HEADER.split(folder.joinpath("queries.sql").read_text())[1:]
    return {name: _strip_comments(block) for name, block in zip(parts[::2], parts[1::2])}


def _psycopg_style(text: str) -> str:
    return _PARAM.sub(r"%(\1)s", text.replace("%", "%%"))


@cache
def queries(dialect: str = "duckdb") -> dict[str, Query]:
    """All named queries of ``queries.sql`` for this dialect."""
    if dialect not in DIALECTS:
        raise ValidationError(f"unknown SQL dialect {shown(dialect)}: one of {DIALECTS}")
    base = resources.files(__package__)
    texts = _read_queries(base)
    if dialect == "postgresql":
        overrides = _read_queries(base.joinpath("postgres"))
        unknown = sorted(set(overrides) - set(texts))
        if unknown:
            raise StorageError(f"postgres/queries.sql overrides unknown queries {unknown}: "
                               "every query it overrides must be in queries.sql")
        texts |= overrides
    out: dict[str, Query] = {}
    for name, body in texts.items():
        params = tuple(dict.fromkeys(_PARAM.findall(body)))
        out[name] = Query(name, _psycopg_style(body) if dialect == "postgresql" else body, params)
    return out


@cache
def migrations(dialect: str = "duckdb") -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration of this dialect, in version order."""
    folder = resources.files(__package__).joinpath(
        "migrations" if dialect == "duckdb" else "postgres")
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d+)_(\w+)\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)
