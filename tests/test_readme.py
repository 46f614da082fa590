"""The README's example runs as written and prints what it says it prints."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_example_runs_as_written():
    example = python_blocks()[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example, str(README), "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "True"  # the comment in the README says so
    assert "research_bot" in lines[-1]


def test_readme_example_is_short():
    assert len(python_blocks()[0].strip().splitlines()) <= 12


def test_every_mcp_tool_is_documented_and_nothing_else():
    from athena_orch.mcp import TOOL_NAMES

    documented = set(re.findall(r"^\| `(orchestration_\w+)` \|", README.read_text(), re.MULTILINE))
    assert documented == set(TOOL_NAMES)
