"""Checkpoint file I/O: the one loader of every checkpoint file in Bridle, and atomic writes.

Loading never runs code from a file: :func:`load_checkpoint_file` calls
``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers (every
checkpoint Bridle writes is of that kind). A legacy file that pickles other objects is refused
with a message naming it; a user who *trusts* such a file may opt in with the environment
variable ``BRIDLE_TRUST_PICKLE=1`` (or ``--unsafe-legacy-checkpoint`` of tools/train_net.py),
which allows, one by one and loudly logged, the globals the file names — i.e. lets that file run
code on this machine.

Writing is atomic: :func:`atomic_save` / :func:`atomic_write_text` write a temporary file in
the destination directory, fsync it, rename it over the destination and fsync the directory,
so a kill at any moment leaves either the old file or the complete new one. A failing write
raises an ``OSError`` that names the file.
"""

import errno
import importlib
import logging
import os
import pickle
import re
from typing import Any, Union

import torch

from bridle.errors import MissingFileError, UserError

logger = logging.getLogger(__name__)

#: Environment variable that opts in to unpickling arbitrary objects from trusted legacy files.
TRUST_PICKLE_ENV = "BRIDLE_TRUST_PICKLE"
_MAX_TRUSTED_GLOBALS = 64


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file cannot be used (unsafe content, truncated, corrupt); names the file."""


def trust_pickle_enabled() -> bool:
    return os.environ.get(TRUST_PICKLE_ENV, "").strip().lower() in ("1", "true", "yes")


def _import_global(name: str) -> Any:
    mod, _, attr = name.rpartition(".")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _load_trusted(path: str, map_location) -> Any:
    """weights_only loading that allows the globals the file asks for (trusted files only)."""
    allowed = []
    for _ in range(_MAX_TRUSTED_GLOBALS):
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            m = re.search(r"GLOBAL ([\w.]+)", str(e))
            if not m:
                raise
            name = m.group(1)
            logger.warning(
                f"UNSAFE: {TRUST_PICKLE_ENV}=1 lets '{path}' import and call '{name}' while it is unpickled."
            )
            allowed.append(_import_global(name))
    raise CheckpointError(f"Checkpoint '{path}' needs more than {_MAX_TRUSTED_GLOBALS} globals; refusing it.")


def load_checkpoint_file(
    path: Union[str, os.PathLike],
    map_location: Union[str, torch.device] = "cpu",
    trust_pickle: bool = False,
) -> dict:
    """``torch.load(path, weights_only=True)`` into a dict; the only checkpoint loader of Bridle.
    An exported folder (a directory, :mod:`bridle.checkpoint.folder`) is read as the same dict.

    Raises :class:`CheckpointError` (naming the file) when the file holds objects other than
    tensors and plain containers (unless ``trust_pickle`` or ``BRIDLE_TRUST_PICKLE=1``), or when
    it is truncated / not a checkpoint."""
    path = os.fspath(path)
    if os.path.isdir(path):  # an exported folder (safetensors + config), see bridle.checkpoint.folder
        from .folder import read_folder

        return read_folder(path, map_location=map_location)
    if not os.path.isfile(path):
        raise MissingFileError(f"Checkpoint file '{path}' does not exist.")
    trusted = trust_pickle or trust_pickle_enabled()
    try:
        if trusted:
            obj = _load_trusted(path, map_location)
        else:
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()
        detail = next((line for line in first if "GLOBAL" in line), first[0] if first else "")
        raise CheckpointError(
            f"Refusing to load '{path}': it holds pickled objects other than tensors and plain "
            f"containers ({detail.strip()}); unpickling them could run code. Bridle's own checkpoints "
            f"never do. If you trust this file, set {TRUST_PICKLE_ENV}=1 (tools/train_net.py: "
            "--unsafe-legacy-checkpoint) to load it anyway."
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise CheckpointError(f"Checkpoint '{path}' is incomplete or corrupt ({type(e).__name__}: {e}).") from None
    if not isinstance(obj, dict):
        raise TypeError(
            f"Checkpoint '{path}' holds a {type(obj).__name__}; expected a dict (state dict or checkpoint)."
        )
    return obj


def _fsync_dir(d: str) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _os_error_behind(exc: BaseException):
    """The OSError that caused ``exc`` (torch.save turns a failed write, e.g. a full disk, into
    ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``, the OSError being its
    context), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _disk_full(d: str) -> bool:
    try:
        st = os.statvfs(d)
    except (OSError, AttributeError):
        return False
    return st.f_bavail * st.f_frsize < 1024 * 1024


def _atomic_write(path: str, write_fn, what: str) -> None:
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        os.makedirs(d, exist_ok=True)
        with open(tmp, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        cause = _os_error_behind(e)
        if cause is None and _disk_full(d):  # the writer hid the OSError: say what it was
            cause = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if cause is None:
            raise
        raise OSError(cause.errno, f"Cannot write {what} '{path}': {cause.strerror or cause}") from e
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(d)


def atomic_save(obj: Any, path: Union[str, os.PathLike]) -> None:
    """``torch.save(obj)`` to ``path`` atomically (temp file in the same dir, fsync, rename)."""

    _atomic_write(os.fspath(path), lambda f: torch.save(obj, f), "checkpoint")


def atomic_write_text(path: Union[str, os.PathLike], text: str, what: str = "file") -> None:
    """Write ``text`` to ``path`` atomically."""
    _atomic_write(os.fspath(path), lambda f: f.write(text.encode("utf-8")), what)
