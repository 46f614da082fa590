"""The ``athena-orch`` command line: a thin layer over the library (demo, mcp, worker).

argparse shows the texts below in ``--help`` as they are, so they are plain text.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__

DESCRIPTION = (
    "Orchestrate work across many agents: a durable task queue on DuckDB or PostgreSQL. "
    "Run 'athena-orch COMMAND --help' for a command's options.")
DB_HELP = "DuckDB file or postgresql:// URL (default orch.duckdb)"


def count(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="athena-orch", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     title="commands")

    demo = commands.add_parser(
        "demo", help="run simulated agents through a sample workload",
        description="Load a team of agents and a graph of tasks (the sample in data/, or a "
                    "synthetic workload with --tasks and --agents), let simulated agents "
                    "work through it on the database, print a summary and write an HTML "
                    "report next to the database file. The work runs on a simulated clock: "
                    "the same --seed on a fresh database gives the same outcome, in "
                    "seconds. Run it again to resume: nothing is done twice.")
    demo.add_argument("--db", default="orch.duckdb", help=DB_HELP)
    demo.add_argument("--tasks", type=count, default=None, metavar="N",
                      help="a synthetic workload of N tasks instead of data/ "
                           "(200 when only --agents is given)")
    demo.add_argument("--agents", type=count, default=None, metavar="N",
                      help="a synthetic workload with N agents instead of data/ "
                           "(8 when only --tasks is given)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument("--real-time", action="store_true",
                      help="run each agent as a real Worker thread on the real clock "
                           "(work scaled down 6000 times) instead of the simulated clock; "
                           "outcomes then vary from run to run")

    mcp = commands.add_parser(
        "mcp", help="serve every operation as MCP tools",
        description="Serve every queue, registry and router operation as an MCP tool (names "
                    "start with orchestration_): over stdio for the one client that starts "
                    "it, or over streamable HTTP with --http for many agents sharing one "
                    "queue. A host other than a loopback address needs a bearer token.")
    mcp.add_argument("--db", default="orch.duckdb", help=DB_HELP)
    mcp.add_argument("--http", metavar="HOST:PORT", default=None,
                     help="serve streamable HTTP instead of stdio (host defaults to 127.0.0.1)")
    mcp.add_argument("--token", default=None,
                     help="bearer token clients must send (or ATHENA_ORCH_TOKEN)")

    worker = commands.add_parser(
        "worker", help="run Python handlers on one agent's tasks until stopped",
        description="Import handlers from module:attribute (a dict of task_type -> callable, "
                    "or one callable for every task the agent can do; the current directory "
                    "is on sys.path) and run them as agent --agent. SIGINT or SIGTERM stops "
                    "claiming, lets running handlers finish within --grace seconds, then "
                    "hands unfinished tasks back (a second signal does so at once).")
    worker.add_argument("handlers", metavar="module:attribute",
                        help="where the handlers are, e.g. my_tasks:HANDLERS")
    worker.add_argument("--db", default="orch.duckdb", help=DB_HELP)
    worker.add_argument("--agent", required=True, help="the agent id this worker works as")
    worker.add_argument("--capabilities", default=None, metavar="A,B",
                        help="register (or update) the agent with these capabilities; "
                             "without, it must be registered already")
    worker.add_argument("--concurrency", type=int, default=1, metavar="N",
                        help="tasks run at once (default 1)")
    worker.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="fail a task whose handler runs longer (default: no limit)")
    worker.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                        help="how long running handlers may finish after a stop (default 30)")
    worker.add_argument("--until-idle", action="store_true",
                        help="exit once nothing this agent can do is ready or running")
    worker.add_argument("--assigned-only", action="store_true",
                        help="run only tasks a dispatcher assigned to this agent (for example "
                             "with router.route_batch); claim nothing from the open queue")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo_cli

        return run_demo_cli(args)
    if args.command == "worker":
        from .worker import run_worker_cli

        return run_worker_cli(args)
    from .mcp.server import run_server_cli

    return run_server_cli(args)


if __name__ == "__main__":
    sys.exit(main())
