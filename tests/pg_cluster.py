"""A throw-away PostgreSQL cluster on a loopback port, for the PostgreSQL test runs.

    python3 tests/pg_cluster.py start DIR   # prints the connection URL
    python3 tests/pg_cluster.py stop DIR

Uses Debian's server binaries (/usr/lib/postgresql/<v>/bin). PostgreSQL refuses to run as
root, so under root the cluster belongs to the unprivileged ``postgres`` user. Standard
library only: .ci/run calls it before the venv exists.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

USER = "athena"


def server_bin() -> Path | None:
    """The newest installed server's bin folder, or None when there is none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: str | Path) -> str:
    """Create and start a cluster in ``folder``; return its URL (trust auth, loopback only).
    Under root, ``folder``'s parents must let the ``postgres`` user through."""
    bindir = server_bin()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server installed (Debian: apt-get install postgresql)")
    folder = Path(folder).resolve()
    data, sockets = folder / "data", folder / "sockets"
    data.mkdir(parents=True, exist_ok=True)
    sockets.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (folder, data, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def run(cmd: list[str]) -> None:
        done = subprocess.run(_as_owner(cmd), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {done.stderr.strip() or done.stdout}")

    run([str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust",
         "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"])
    port = _free_port()
    options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={sockets} "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
               "-c max_connections=200")
    run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"),
         "-o", options, "-w", "start"])
    (folder / "url").write_text(url := f"postgresql://{USER}@127.0.0.1:{port}/postgres")
    return url


def stop(folder: str | Path) -> None:
    data = Path(folder).resolve() / "data"
    bindir = server_bin()
    if bindir is None or not (data / "postmaster.pid").exists():
        return
    subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                              "-w", "stop"]), check=False, capture_output=True)


@contextmanager
def throwaway(why: str) -> Iterator[tuple[str, Path]]:
    """For a test: a cluster of its own, (URL, folder), stopped and removed afterwards. The
    test skips, saying ``why`` it needs one, when it cannot be had."""
    import pytest

    if server_bin() is None:
        pytest.skip(f"PostgreSQL's server binaries are not installed (Debian: apt-get "
                    f"install postgresql), and {why}")
    folder = Path(tempfile.mkdtemp(prefix="athena-pg-"))
    try:
        url = start(folder)
    except Exception as exc:  # noqa: BLE001 - any failure to start is a reason to skip
        stop(folder)
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"could not start a throw-away PostgreSQL cluster: {exc}")
    try:
        yield url, folder
    finally:
        stop(folder)
        shutil.rmtree(folder, ignore_errors=True)

if __name__ == "__main__":
    action, where = sys.argv[1], sys.argv[2]
    if action == "start":
        print(start(where))
    else:
        stop(where)
