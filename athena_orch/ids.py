"""Task ids: UUID version 7, increasing within a process, never repeated across them."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable

import numpy as np

_TASK_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                      re.IGNORECASE)
_id_lock = threading.Lock()
_last_id = [0, 0]  # (unix ms, counter) of the last id made in this process


def looks_like_task_id(key: str) -> bool:
    """True for a string shaped like the ids :func:`new_task_ids` makes (any UUID)."""
    return len(key) == 36 and _TASK_ID.fullmatch(key) is not None


def new_task_ids(n: int, *, clock: Callable[[], float] = time.time) -> list[str]:
    """``n`` fresh task ids: UUID version 7 (RFC 9562) with a 42-bit counter (its
    "fixed bit-length dedicated counter" method), so ids of one process increase and
    ids made together are consecutive (DuckDB's unique index inserts those twice as fast
    as random ones); the last 32 bits are random, and a new millisecond starts the
    counter at a random point, so processes never make the same id."""
    if n == 0:
        return []
    with _id_lock:
        ms = int(clock() * 1000)
        last_ms, last_counter = _last_id
        if ms > last_ms:
            start = int.from_bytes(os.urandom(5), "big") >> 1  # 39 bits: room to count
        else:  # the same millisecond (or the clock went back): go on counting
            ms, start = last_ms, last_counter + 1
        if start + n >= 2**42:  # the counter would overflow: borrow the next millisecond
            ms, start = ms + 1, 0
        _last_id[:] = [ms, start + n - 1]
    counter = np.arange(start, start + n, dtype=np.uint64)
    raw = np.empty((n, 16), dtype=np.uint8)
    raw[:, :6] = np.frombuffer(ms.to_bytes(6, "big"), dtype=np.uint8)
    raw[:, 6] = 0x70 | ((counter >> 38) & 0x0F).astype(np.uint8)
    raw[:, 7] = ((counter >> 30) & 0xFF).astype(np.uint8)
    raw[:, 8] = 0x80 | ((counter >> 24) & 0x3F).astype(np.uint8)
    for byte, shift in ((9, 16), (10, 8), (11, 0)):
        raw[:, byte] = ((counter >> shift) & 0xFF).astype(np.uint8)
    raw[:, 12:] = np.frombuffer(os.urandom(4 * n), dtype=np.uint8).reshape(n, 4)
    hexes = np.frombuffer(raw.tobytes().hex().encode("ascii"), dtype=np.uint8).reshape(n, 32)
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for start, stop, at in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        text[:, at:at + stop - start] = hexes[:, start:stop]
    joined = text.tobytes().decode("ascii")
    return [joined[i:i + 36] for i in range(0, 36 * n, 36)]
