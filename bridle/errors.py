"""User errors: what the user gave (config keys, types and values, files, OUTPUT_DIR, data)
cannot be used. Not bugs.

``tools/train_net.py`` prints such an error as ONE line on stderr, ``bridle: error: <message>``,
and exits with :data:`EXIT_USER_ERROR` (2, as argparse does for a bad command line), without a
traceback; ``--debug`` or ``BRIDLE_DEBUG=1`` shows the traceback too. Every other exception is
a bug or a crash and keeps its traceback (exit code 1); a run stopped on request exits 75
(:data:`bridle.engine.signals.EXIT_INTERRUPTED`).

A user error is an instance of :class:`UserError` (the config, checkpoint, output-dir, data and
manifest errors of Bridle and its plugins derive from it, next to the builtin type they always
had: ``ConfigError`` is a ``KeyError``, ``ConfigValueError`` a ``ValueError``, ...), or an
``OSError`` of the environment (a missing file, a permission, a full disk:
:data:`ENVIRONMENT_ERRNOS`). Messages say what, where (the key and the file) and what was
expected.
"""

import errno
import os
from typing import Optional

#: Exit code of a run that stopped on a user error.
EXIT_USER_ERROR = 2
#: Environment variable that makes user errors show their traceback (as ``--debug``).
DEBUG_ENV = "BRIDLE_DEBUG"

#: errno values of an ``OSError`` that are the environment's (a path, a permission, space),
#: reported as one line like a :class:`UserError`.
ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ENOENT",
        "ENOTDIR",
        "EISDIR",
        "EEXIST",
        "EACCES",
        "EPERM",
        "EROFS",
        "ENOSPC",
        "EDQUOT",
        "ENAMETOOLONG",
        "ELOOP",
        "EFBIG",
        "EMFILE",
        "ENFILE",
    )
    if hasattr(errno, name)
)


class UserError(Exception):
    """Base class of every user error (see the module docstring). Subclasses also derive from
    the builtin type callers catch (``ValueError``, ``KeyError``, ``FileNotFoundError``, ...)."""

    def __str__(self) -> str:  # KeyError quotes its message and OSError prefixes "[Errno N]"
        if isinstance(self, OSError) and self.strerror is not None and self.filename is None:
            return str(self.strerror)
        return str(self.args[0]) if self.args else ""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the config points at does not exist: ``KEY 'path' does not exist``."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOENT, message)


class OutputDirError(UserError, OSError):
    """OUTPUT_DIR cannot be used (a file, not writable) or already holds a run that this run
    would overwrite (start it with --resume, --overwrite or another OUTPUT_DIR)."""

    def __init__(self, message: str, err: int = errno.EEXIST) -> None:
        super().__init__(err, message)


def missing_file(key: str, path: str, what: str = "") -> MissingFileError:
    """``KEY 'path' does not exist`` (``what`` adds e.g. "(the training manifest)")."""
    return MissingFileError(f"{key} '{path}' does not exist{(' ' + what) if what else ''}.")


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes")


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(lines) if lines else ""


def user_error_message(exc: BaseException) -> Optional[str]:
    """The one-line message of ``exc`` when it is a user error, else None (a bug: traceback)."""
    if isinstance(exc, UserError):
        return _one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
        if exc.filename is not None:
            where = f"'{exc.filename}'" + (f" -> '{exc.filename2}'" if exc.filename2 is not None else "")
            return _one_line(f"{where}: {exc.strerror}")
        return _one_line(exc.strerror if exc.strerror is not None else str(exc))
    return None


def log_error_to_files(msg: str) -> None:
    """Record the error in the run's log files (the console gets the one line on stderr)."""
    import logging

    log = logging.getLogger("bridle")
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, msg, None, None)
    for h in list(log.handlers):
        if isinstance(h, logging.FileHandler):
            try:
                h.handle(record)
            except Exception:  # e.g. the disk that is full: the console line is what matters
                pass


def report_user_error(msg: str, exc: Optional[BaseException] = None, rank: Optional[int] = None) -> None:
    """Print ``bridle: error: <msg>`` on stderr (with the traceback of ``exc`` first when
    --debug / BRIDLE_DEBUG=1) and record it in the log files. Under torchrun the ranks
    other than 0 say which they are."""
    import sys
    import traceback

    if rank is None:
        rank = int(os.environ.get("RANK", "0") or 0) if "WORLD_SIZE" in os.environ else 0
    who = f"[rank {rank}] " if rank else ""
    if exc is not None and debug_enabled():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    log_error_to_files(f"{who}{msg}")
    sys.stdout.flush()
    print(f"bridle: error: {who}{msg}", file=sys.stderr, flush=True)


__all__ = [
    "DEBUG_ENV",
    "ENVIRONMENT_ERRNOS",
    "EXIT_USER_ERROR",
    "MissingFileError",
    "OutputDirError",
    "UserError",
    "debug_enabled",
    "log_error_to_files",
    "missing_file",
    "report_user_error",
    "user_error_message",
]
