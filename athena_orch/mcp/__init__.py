"""The Model Context Protocol face of athena-orch: every operation as an ``orchestration_*`` tool.

    from athena_orch.mcp import OrchestrationHandlers, build_server
    server = build_server(athena_orch.connect("orch.duckdb"))   # an mcp MCPServer

``athena-orch mcp`` serves it over stdio, or over streamable HTTP with ``--http HOST:PORT``.
Importing this package imports the ``mcp`` SDK; ``import athena_orch`` does not.

The tools are plain functions, one module per area (``tools_tasks``, ``tools_agents``,
``tools_routing``), listed once in ``tools.TOOLS``; ``arguments`` holds their argument
types, ``answers`` bounds what they answer, ``handlers`` runs them (turns, lock, errors)
and ``server`` serves them.
"""

from .answers import jsonable
from .handlers import OrchestrationHandlers
from .server import build_server, run_server_cli
from .tools import TOOL_NAMES

__all__ = ["TOOL_NAMES", "OrchestrationHandlers", "build_server", "jsonable", "run_server_cli"]
