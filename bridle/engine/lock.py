"""One run per OUTPUT_DIR: a lock file ``OUTPUT_DIR/.bridle.lock`` holding the pid, host, start
time and command of the run that owns the directory.

A second run on the same directory refuses with a message naming the owner. A lock is stale
(and taken over, with a warning) when its owner ran on this host and its pid is gone, or when
its heartbeat (the file's mtime, refreshed every minute by the owner) is older than
:data:`STALE_AFTER_S` (an owner on another host that died without cleaning up).
"""

import atexit
import json
import logging
import os
import socket
import sys
import threading
import time
from typing import Optional

from bridle.errors import UserError

logger = logging.getLogger(__name__)

LOCK_NAME = ".bridle.lock"
HEARTBEAT_S = 60.0
STALE_AFTER_S = 10 * 60.0

_held: dict = {}


class OutputDirLocked(UserError, RuntimeError):
    """OUTPUT_DIR is used by another run."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _stale_reason(path: str, info: Optional[dict]) -> Optional[str]:
    try:
        age = time.time() - os.path.getmtime(path)
    except OSError:
        return "it vanished"
    if info is None:
        return "it is unreadable" if age > 5.0 else None  # a lock being written right now is not stale
    if info.get("host") == socket.gethostname() and not _pid_alive(int(info.get("pid", -1))):
        return f"process {info.get('pid')} on {info.get('host')} no longer exists"
    if age > STALE_AFTER_S:
        return f"its heartbeat is {age / 60:.0f} minutes old"
    return None


def acquire_output_dir_lock(out_dir: str) -> str:
    """Take the lock of ``out_dir`` for this process (idempotent); raise OutputDirLocked when
    another live run holds it. Released at exit."""
    out_dir = os.path.abspath(out_dir)
    path = os.path.join(out_dir, LOCK_NAME)
    if path in _held:
        return path
    os.makedirs(out_dir, exist_ok=True)
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "start_time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv),
    }
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            other = _read(path)
            if other and other.get("pid") == os.getpid() and other.get("host") == info["host"]:
                break  # this process took it before (e.g. another trainer in the same process)
            reason = _stale_reason(path, other)
            if reason is None:
                o = other or {}
                raise OutputDirLocked(
                    f"OUTPUT_DIR '{out_dir}' is in use by another run (pid {o.get('pid')} on host "
                    f"{o.get('host')}, started {o.get('start_time')}: {o.get('command', '?')}). Use another "
                    f"OUTPUT_DIR, or wait for that run to end; if it is certainly dead, delete {path}."
                ) from None
            logger.warning(f"Taking over the stale lock {path} ({reason}).")
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        break
    else:
        raise OutputDirLocked(f"Could not take the lock {path} (another run keeps taking it).")
    stop = threading.Event()
    _held[path] = stop

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                os.utime(path)
            except OSError:
                return

    threading.Thread(target=beat, name="bridle-lock-heartbeat", daemon=True).start()
    atexit.register(release_output_dir_lock, out_dir)
    return path


def release_output_dir_lock(out_dir: str) -> None:
    path = os.path.join(os.path.abspath(out_dir), LOCK_NAME)
    stop = _held.pop(path, None)
    if stop is None:
        return
    stop.set()
    other = _read(path)
    if other is None or (other.get("pid") == os.getpid() and other.get("host") == socket.gethostname()):
        try:
            os.remove(path)
        except OSError:
            pass
