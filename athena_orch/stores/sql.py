"""Named SQL: reads ``queries.sql`` and the numbered migrations beside it.

Each query is a block under ``-- name: <name>``; its parameters are the ``$name`` tokens
in it, so a caller's extra keys are dropped before binding (DuckDB rejects them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

_PARAM = re.compile(r"\$([a-z_][a-z0-9_]*)")
_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Query:
    name: str
    text: str
    params: tuple[str, ...]

    def bind(self, values: dict | None) -> dict:
        values = values or {}
        missing = [p for p in self.params if p not in values]
        if missing:
            raise KeyError(f"query {self.name!r} needs parameters {missing}")
        return {p: values[p] for p in self.params}


def _strip_comments(block: str) -> str:
    lines = [ln for ln in block.splitlines() if not ln.lstrip().startswith("--")]
    return "\n".join(lines).strip()


@cache
def queries() -> dict[str, Query]:
    """All named queries of ``queries.sql``."""
    text = resources.files(__package__).joinpath("queries.sql").read_text()
    parts = _HEADER.split(text)[1:]
    out: dict[str, Query] = {}
    for name, block in zip(parts[::2], parts[1::2]):
        body = _strip_comments(block)
        out[name] = Query(name, body, tuple(dict.fromkeys(_PARAM.findall(body))))
    return out


@cache
def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every file in ``migrations/``, in version order."""
    folder = resources.files(__package__).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d+)_(\w+)\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)
