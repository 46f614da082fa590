"""The athena-orch MCP server: ``build_server(orch)`` and the ``athena-orch mcp`` command.

- ``athena-orch mcp [--db PATH]`` serves one client over stdio.
- ``athena-orch mcp --http HOST:PORT`` serves streamable HTTP at ``http://HOST:PORT/mcp``, so
  many agents share one queue through the one process that owns the DuckDB file. ``HOST``
  defaults to 127.0.0.1 (``--http :8765`` or ``--http 8765``). Binding anything but a
  loopback address needs a bearer token (``--token`` or ``ATHENA_ORCH_TOKEN``); when a token
  is set, requests without ``Authorization: Bearer <token>`` get HTTP 401. A blank token, or
  one no client could send back, is refused at start.
- On a loopback address (any 127.x.y.z, ::1, localhost) the server answers only requests
  whose ``Host`` names a loopback address and whose ``Origin``, when sent, is a loopback
  page (HTTP 421 / 403 otherwise), so a web page of another site cannot reach it through
  DNS rebinding.
- A request that does not accept both ``application/json`` and ``text/event-stream`` by
  name (as the streamable HTTP transport requires; ``*/*`` is not enough) gets HTTP 406
  before anything runs.
- Either way the server calls ``queue.requeue_stale()`` every 30 s (``ATHENA_ORCH_REQUEUE_SECONDS``
  changes it), so the tasks of agents that died are retried by the others.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
import typing
from collections.abc import Callable
from typing import Any

import anyio
import pydantic
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp.server.transport_security import TransportSecuritySettings
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..exceptions import OrchestrationError, ValidationError
from .handlers import OrchestrationHandlers
from .tools import TOOL_NAMES

logger = logging.getLogger("athena_orch.mcp")

TOKEN_ENV = "ATHENA_ORCH_TOKEN"
REQUEUE_ENV = "ATHENA_ORCH_REQUEUE_SECONDS"
DEFAULT_REQUEUE_SECONDS = 30.0
DEFAULT_HOST = "127.0.0.1"
MCP_PATH = "/mcp"

INSTRUCTIONS = """\
athena-orch: a shared task queue with an agent registry and an explainable router.
Worker loop: orchestration_register_agent once (id + capabilities), then repeat
orchestration_claim_task -> orchestration_start_task -> do the work (call
orchestration_heartbeat for long work) -> orchestration_complete_task, or
orchestration_fail_task on failure; pass your agent_id and the claimed task's `attempt` to
each of those four, so a call for a task handed to someone else meanwhile (your lease ran
out) is refused instead of undoing their work. Coordinators create work with orchestration_create_task
(with an idempotency_key, so a call sent again after a timeout makes no duplicate) or
orchestration_create_tasks (batch-local `key`s for dependencies), watch it with
orchestration_get_queue_statistics / orchestration_query_tasks / orchestration_get_task, and
ask orchestration_route_task who should do a task and why. Lists come a page at a time
(limit, offset -> next_offset) with long texts cut; orchestration_get_task and
orchestration_read_task_text give them whole. Errors come back as tool errors naming what
was wrong; nothing is changed by a call that fails."""


def _takes_text(annotation: Any) -> bool:
    """True for ``str`` and unions with ``str`` in them (``str | None``)."""
    return annotation is str or str in typing.get_args(annotation)


class _TextArgsStayText(FuncMetadata):
    """The SDK's argument metadata, except that a string given to an argument that takes a
    string is left alone. The SDK parses JSON inside strings for every argument not
    annotated exactly ``str`` (so agents that send '["a", "b"]' for a list still work),
    which turned "null" into None for ``str | None`` arguments: a cancel reason "null" was
    dropped, a filter agent_id="null" vanished."""

    def pre_parse_json(self, data: dict[str, Any]) -> dict[str, Any]:
        parsed = super().pre_parse_json(data)
        fields = self.arg_model.model_fields
        for key, value in data.items():
            if isinstance(value, str) and key in fields and _takes_text(fields[key].annotation):
                parsed[key] = value
        return parsed


class OrchestrationServer(MCPServer):
    """An ``MCPServer`` whose tool errors for bad arguments are short and name the argument,
    and which refuses arguments a tool does not take (instead of silently ignoring them)."""

    handlers: OrchestrationHandlers

    _arg_names: dict[str, frozenset[str]] | None = None

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        known = await self._tool_arguments(name)
        if known is not None:
            unknown = sorted(set(arguments) - known)
            if unknown:
                raise ToolError(
                    f"Error executing tool {name}: unknown argument(s) {unknown}; "
                    f"it takes {sorted(known)}"
                )
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, pydantic.ValidationError):
                problems = "; ".join(_describe(error) for error in cause.errors())
                raise ToolError(
                    f"Error executing tool {name}: invalid arguments: {problems}"
                ) from cause
            raise

    def add_tool(self, fn: Callable[..., Any], name: str | None = None, **options: Any) -> None:
        super().add_tool(fn, name=name, **options)
        tool = self._tool_manager.get_tool(name or fn.__name__)
        meta = tool.fn_metadata
        tool.fn_metadata = _TextArgsStayText(
            arg_model=meta.arg_model,
            output_schema=meta.output_schema,
            output_model=meta.output_model,
            wrap_output=meta.wrap_output,
        )

    async def _tool_arguments(self, name: str) -> frozenset[str] | None:
        if self._arg_names is None or name not in self._arg_names:
            self._arg_names = {
                t.name: frozenset(t.input_schema.get("properties", {}))
                for t in await self.list_tools()
            }
        return self._arg_names.get(name)


def _describe(error: Any) -> str:
    """One pydantic error as 'argument: message (got value)'."""
    where = ".".join(str(part) for part in error.get("loc", ())) or "arguments"
    message = error.get("msg", "is invalid")
    if error.get("type") == "missing":
        return f"{where}: required"
    try:
        shown = json.dumps(error.get("input"), default=str)
    except (TypeError, ValueError):
        shown = str(error.get("input"))
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{where}: {message} (got {shown})"


def build_server(orch: Any, *, name: str = "athena-orch") -> MCPServer:
    """An MCP server with every orchestration tool over ``orch`` (an OrchestrationManager).

    The server's ``handlers`` attribute is the :class:`OrchestrationHandlers` it uses.
    """
    server = OrchestrationServer(
        name=name, version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    server.handlers = OrchestrationHandlers(orch.queue, orch.registry, orch.router)
    server.handlers.register_tools(server)
    return server


# --------------------------------------------------------------------------- background work
async def requeue_loop(handlers: OrchestrationHandlers, interval: float) -> None:
    """Every ``interval`` seconds, retry the tasks whose lease ran out (forever)."""
    while True:
        await anyio.sleep(interval)
        try:
            stale = await handlers.requeue_stale()
        except Exception:  # the timer must never take the server down
            logger.exception("requeue_stale failed; will try again in %s s", interval)
            continue
        if stale:
            logger.warning(
                "requeued %d task(s) whose lease ran out: %s", len(stale), ", ".join(stale)
            )


# --------------------------------------------------------------------------- HTTP pieces
class BearerTokenMiddleware:
    """Answers HTTP 401 to every request without ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self._authorized(scope):
            refusal = JSONResponse(
                {"error": "unauthorized", "error_description": "send Authorization: Bearer <token>"},
                status_code=401, headers={"www-authenticate": 'Bearer realm="athena-orch"'})
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        for key, value in scope.get("headers", ()):
            if key.lower() == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    credentials.strip(), self._token
                )
        return False


class RequireAcceptMiddleware:
    """Answers HTTP 406 to a POST whose ``Accept`` does not name both ``application/json``
    and ``text/event-stream``, and to a GET that does not name ``text/event-stream``, as the
    streamable HTTP transport requires of clients. The SDK lets ``*/*`` (what curl and
    httpx send by default) stand for both, and runs the request."""

    NEEDED = {
        "POST": ("application/json", "text/event-stream"),
        "GET": ("text/event-stream",),
    }

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        needed = self.NEEDED.get(scope.get("method", "")) if scope["type"] == "http" else None
        if needed and not set(needed) <= _accepted(scope):
            refusal = JSONResponse({"error": "not_acceptable",
                                    "error_description": f"send Accept: {', '.join(needed)}"},
                                   status_code=406)
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _accepted(scope: Scope) -> set[str]:
    """The media types the request's Accept headers name, less those it gives q=0."""
    types = set()
    for key, value in scope.get("headers", ()):
        if key.lower() != b"accept":
            continue
        for item in value.decode("latin-1").lower().split(","):
            media, *params = (part.strip() for part in item.split(";"))
            if not any(_refused(param) for param in params):
                types.add(media)
    return types


def _refused(param: str) -> bool:
    """Whether an Accept parameter is q=0 (not acceptable)."""
    name, _, value = param.partition("=")
    try:
        return name.strip() == "q" and float(value) == 0
    except ValueError:
        return False


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def transport_security(host: str, port: int) -> TransportSecuritySettings | None:
    """Host/Origin checks against DNS rebinding for a loopback bind: the Host must be the
    bound address or another loopback name, with this port (or none), and an Origin, when
    sent, a page on a loopback name. The SDK does this by itself only for 127.0.0.1,
    localhost and ::1, not for the rest of 127.0.0.0/8. None for other binds, which need a
    bearer token: their clients reach them by names this server cannot know."""
    if not is_loopback(host):
        return None
    bound = f"[{host}]" if ":" in host else host.lower()
    names = dict.fromkeys((bound, *LOOPBACK_NAMES))
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{name}:{port}" for name in names] + list(names),
        allowed_origins=[f"http://{name}:*" for name in names] + [f"http://{n}" for n in names],
    )


def parse_http_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT``, ``PORT`` or ``[IPv6]:PORT`` -> (host, port); host defaults
    to 127.0.0.1. Raises ValidationError with a readable message."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValidationError(f"--http {text!r}: write an IPv6 address as [ADDRESS]:PORT")
    elif ":" in text:
        host, _, port = text.rpartition(":")
    else:
        host, port = "", text
    host = host or DEFAULT_HOST
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValidationError(f"--http {text!r}: expected HOST:PORT with a port from 1 to 65535")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{MCP_PATH}"


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), ready for the HTTP server; OSError if it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def serve_http(
    server: MCPServer,
    sock: socket.socket,
    *,
    token: str | None,
    requeue_seconds: float,
    announce: Callable[[], None],
) -> int:
    """Serve streamable HTTP on a bound socket until SIGINT/SIGTERM, requeueing stale tasks
    meanwhile. Returns 0 after a clean stop, else uvicorn's startup failure code."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    app: ASGIApp = server.streamable_http_app(
        host=host,
        streamable_http_path=MCP_PATH,
        transport_security=transport_security(host, port),
    )
    app = RequireAcceptMiddleware(app)
    if token:
        app = BearerTokenMiddleware(app, token)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=3)
    web = uvicorn.Server(config)
    status = 0

    def stop(signum: int, frame: Any) -> None:
        web.should_exit = True

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(requeue_loop, server.handlers, requeue_seconds)

            async def announce_when_started() -> None:
                while not web.started and not web.should_exit:
                    await anyio.sleep(0.02)
                if web.started:
                    announce()

            tg.start_soon(announce_when_started)
            try:
                await web.serve(sockets=[sock])
            except SystemExit as exc:  # uvicorn's way of saying startup failed
                status = exc.code if isinstance(exc.code, int) and exc.code else 1
            tg.cancel_scope.cancel()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


async def serve_stdio(server: MCPServer, *, requeue_seconds: float) -> None:
    """Serve one client over stdin/stdout until it closes stdin."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(requeue_loop, server.handlers, requeue_seconds)
        await server.run_stdio_async()
        tg.cancel_scope.cancel()


# --------------------------------------------------------------------------- the command
def _requeue_seconds(args: argparse.Namespace) -> float:
    value = getattr(args, "requeue_seconds", None) or os.environ.get(REQUEUE_ENV)
    if value is None:
        return DEFAULT_REQUEUE_SECONDS
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValidationError(f"{REQUEUE_ENV} must be a positive number of seconds, not {value!r}")
    return seconds


def _token(args: argparse.Namespace) -> str | None:
    """The bearer token from --token, else ATHENA_ORCH_TOKEN; None when neither is given.
    ValidationError for a token no client could send back."""
    if args.token is not None:
        source, token = "--token", args.token
    else:
        source, token = TOKEN_ENV, os.environ.get(TOKEN_ENV)
    if token is None:
        return None
    if not token.strip():
        raise ValidationError(
            f"{source} is blank: give a secret that clients send as "
            "'Authorization: Bearer TOKEN', or leave the token out on a loopback address"
        )
    if token != token.strip():
        raise ValidationError(f"{source} starts or ends with white space, which clients cannot send")
    if not all(" " <= c <= "~" for c in token):
        raise ValidationError(f"{source} must be printable ASCII: it travels in an HTTP header")
    return token


def _say(message: str) -> None:
    print(f"athena-orch mcp: {message}", file=sys.stderr, flush=True)


def run_server_cli(args: argparse.Namespace) -> int:
    """``athena-orch mcp``: returns the exit status (0 after a clean stop, 1 when the
    database cannot be opened, 2 for a bad command line or an unsafe bind)."""
    try:
        token = _token(args)
        requeue_seconds = _requeue_seconds(args)
        address = parse_http_address(args.http) if args.http else None
    except ValueError as exc:
        _say(str(exc))
        return 2
    if address is not None and not is_loopback(address[0]) and not token:
        _say(
            f"refusing to serve on {address[0]}, which is not a loopback address, without a "
            f"bearer token: pass --token TOKEN or set {TOKEN_ENV} (clients then send "
            "'Authorization: Bearer TOKEN'), or bind 127.0.0.1"
        )
        return 2

    sock = None
    if address is not None:
        try:  # before opening the database: a taken port changes nothing
            sock = bind_socket(*address)
        except OSError as exc:
            _say(f"cannot listen on {_url(*address)}: {exc.strerror or exc}")
            return 1

    import athena_orch

    try:
        orch = athena_orch.connect(args.db)
    except OrchestrationError as exc:
        _say(str(exc))
        if sock is not None:
            sock.close()
        return 1
    status = 0
    try:
        server = build_server(orch)
        if sock is None:
            note = "; --token is ignored over stdio" if token else ""
            _say(f"serving MCP over stdio (db {orch.path}, {len(TOOL_NAMES)} tools{note})")
            anyio.run(lambda: serve_stdio(server, requeue_seconds=requeue_seconds))
        else:
            url = _url(*address)
            auth = "bearer token required" if token else "no token"
            status = anyio.run(
                lambda: serve_http(
                    server,
                    sock,
                    token=token,
                    requeue_seconds=requeue_seconds,
                    announce=lambda: _say(
                        f"serving MCP over streamable HTTP at {url} (db {orch.path}, {auth})"
                    ),
                )
            )
    except KeyboardInterrupt:
        pass
    finally:
        if sock is not None:
            sock.close()
        orch.close()
    return status
