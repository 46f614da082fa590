"""The ``athena-orch`` command line as a user meets it, run as a real process: --version,
the help of every command, and counts on the command line that make no sense.

Nothing here opens a database: every command line either prints and exits or is refused by
the argument parser.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from athena_orch import __version__
from athena_orch.cli import build_parser

COMMANDS = ["demo", "mcp", "worker"]
CONSOLE_SCRIPT = Path(sys.executable).with_name("athena-orch")


def run(*args: str, command: tuple[str, ...] = (sys.executable, "-m", "athena_orch")
        ) -> subprocess.CompletedProcess:
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)


def description_of(help_text: str) -> str:
    """The paragraph(s) between the usage lines and the first section of a --help."""
    _, _, rest = help_text.partition("\n\n")
    return rest.split("\n\n")[0] if not rest.startswith(("options:", "positional")) else ""


def test_version_is_the_package_version():
    done = run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"athena-orch {__version__}\n"


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason=f"{CONSOLE_SCRIPT} is not installed")
def test_the_console_script_is_the_same_command():
    done = run("--version", command=(str(CONSOLE_SCRIPT),))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"athena-orch {__version__}\n"


@pytest.mark.parametrize("args", [[], *[[c] for c in COMMANDS]], ids=["top", *COMMANDS])
def test_every_help_has_a_plain_text_description(args):
    done = run(*args, "--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith(f"usage: athena-orch {' '.join(args)}".rstrip())
    assert len(description_of(text).split()) >= 10, text
    assert not re.search(r"``|\*\*|:\w+:`|^\s*\.\. \w", text, re.MULTILINE), text  # reST


def test_the_top_level_help_lists_every_command_with_what_it_does():
    text = run("--help").stdout
    for command in COMMANDS:
        line = next(line for line in text.splitlines() if line.split()[:1] == [command])
        assert len(line.split()) > 3, line
    assert "--version" in text


def test_no_command_is_a_usage_error():
    done = run()
    assert done.returncode == 2
    assert done.stderr.startswith("usage: athena-orch")
    assert "the following arguments are required: COMMAND" in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--tasks", "0"], "argument --tasks: must be at least 1, not 0"),
    (["--tasks", "-5"], "argument --tasks: must be at least 1, not -5"),
    (["--agents", "0"], "argument --agents: must be at least 1, not 0"),
    (["--agents", "-1", "--tasks", "10"], "argument --agents: must be at least 1, not -1"),
    (["--tasks", "ten"], "argument --tasks: expected a whole number, got 'ten'"),
    (["--tasks", "2.5"], "argument --tasks: expected a whole number, got '2.5'"),
])
def test_a_count_below_1_is_refused_with_a_usage_error(tmp_path, args, message):
    db = tmp_path / "orch.duckdb"
    done = run("demo", "--db", str(db), *args)
    assert done.returncode == 2
    assert done.stdout == ""  # nothing ran
    assert done.stderr.startswith("usage: athena-orch demo")
    assert f"athena-orch demo: error: {message}\n" in done.stderr
    assert "Traceback" not in done.stderr
    assert not db.exists()


def test_counts_of_1_and_more_are_taken_as_given():
    args = build_parser().parse_args(["demo", "--tasks", "1", "--agents", "500"])
    assert (args.tasks, args.agents) == (1, 500)
    args = build_parser().parse_args(["demo"])
    assert (args.tasks, args.agents) == (None, None)  # the sample in data/
