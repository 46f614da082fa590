"""The HTTP MCP server as a subprocess, for the tests that talk to it over the network."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

START_TIMEOUT = 30
STOP_TIMEOUT = 15


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATHENA_ORCH_")}
    env.update(extra)
    return env


class HttpServer:
    """``python -m athena_orch mcp --http`` as a subprocess, on ``host`` (an IPv4 loopback
    address)."""

    def __init__(self, tmp_path: Path, *extra: str, env: dict[str, str] | None = None,
                 host: str = "127.0.0.1"):
        self.host = host
        self.port = free_port(host)
        self.db = tmp_path / f"server-{self.port}.duckdb"
        self.url = f"http://{host}:{self.port}/mcp"
        self.log = tmp_path / f"server-{self.port}.log"
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "athena_orch",
                "mcp",
                "--db",
                str(self.db),
                "--http",
                f"{host}:{self.port}",
                *extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
            env=env or clean_env(),
        )

    def wait_until_serving(self) -> bool:
        """True once it answers; False when the port was taken meanwhile (try another)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "address already in use" in self.stderr().lower():
                    return False
                pytest.fail(f"server exited with {self.proc.returncode}: {self.stderr()}")
            if "serving" in self.stderr():
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.5):
                        return True
                except OSError:
                    pass
            time.sleep(0.05)
        pytest.fail(f"server did not answer within {START_TIMEOUT}s: {self.stderr()}")

    def stderr(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        if not self._log_file.closed:
            self._log_file.close()
        return self.proc.returncode


def start_http_server(tmp_path: Path, started: list[HttpServer], *extra: str,
                      env: dict[str, str] | None = None, host: str = "127.0.0.1") -> HttpServer:
    """A serving HttpServer (appended to ``started``, which the caller stops)."""
    for _ in range(3):  # free_port() can race with another process taking the port
        server = HttpServer(tmp_path, *extra, env=env, host=host)
        started.append(server)
        if server.wait_until_serving():
            return server
        server.stop()
    pytest.fail("no free loopback port")
