"""The Model Context Protocol face of athena-orch: every operation as an ``orchestration_*`` tool.

    from athena_orch.mcp import OrchestrationHandlers, build_server
    server = build_server(athena_orch.connect("orch.duckdb"))   # an mcp MCPServer

``athena-orch mcp`` serves it over stdio, or over streamable HTTP with ``--http HOST:PORT``.
Importing this package imports the ``mcp`` SDK; ``import athena_orch`` does not.
"""

from .handlers import TOOL_NAMES, OrchestrationHandlers, jsonable
from .server import build_server, run_server_cli

__all__ = ["TOOL_NAMES", "OrchestrationHandlers", "build_server", "jsonable", "run_server_cli"]
