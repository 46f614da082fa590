"""``athena-orch`` command line: a thin layer over the library (demo, mcp)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="athena-orch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run simulated agents through a sample workload")
    demo.add_argument("--db", default="orch.duckdb", help="DuckDB file or postgresql:// URL (default orch.duckdb)")
    demo.add_argument("--tasks", type=int, default=None, help="synthetic tasks instead of data/")
    demo.add_argument("--agents", type=int, default=None, help="synthetic agents instead of data/")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")

    mcp = commands.add_parser("mcp", help="serve every operation as MCP tools")
    mcp.add_argument("--db", default="orch.duckdb", help="DuckDB file or postgresql:// URL (default orch.duckdb)")
    mcp.add_argument("--http", metavar="HOST:PORT", default=None,
                     help="serve streamable HTTP instead of stdio (host defaults to 127.0.0.1)")
    mcp.add_argument("--token", default=None,
                     help="bearer token clients must send (or ATHENA_ORCH_TOKEN)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo_cli

        return run_demo_cli(args)
    from .mcp.server import run_server_cli

    return run_server_cli(args)


if __name__ == "__main__":
    sys.exit(main())
