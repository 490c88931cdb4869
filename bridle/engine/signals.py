"""Graceful stops: preemption signals, stop requests from any thread, and no orphan ranks.

Contract (docs/DESIGN.md "Stopping a run"):

* :func:`install_stop_handlers` makes SIGTERM, SIGINT and SIGUSR1 (Slurm's pre-timeout signal)
  *request* a stop instead of killing the process; a second SIGINT interrupts at once
  (``KeyboardInterrupt``).
* :func:`request_stop` can be called from any thread or signal handler (e.g. a submitit
  checkpoint callback); :func:`stop_requested` returns the first reason given, or None.
* The trainer checks the request at step boundaries (every rank at the same iteration, see
  :class:`bridle.engine.hooks.StopOnRequest`), writes a checkpoint, then raises
  :class:`TrainingInterrupted`; ``tools/train_net.py`` turns it into a one-line message and
  the exit code :data:`EXIT_INTERRUPTED` (75). ``--resume`` continues from that checkpoint
  (with a schedule: in the phase it was in).
* :func:`die_with_parent` makes a worker process receive SIGTERM when its launcher dies
  (Linux ``PR_SET_PDEATHSIG``; elsewhere a watcher thread polls the parent pid).
"""

import ctypes
import logging
import os
import signal
import sys
import threading
from typing import Optional

logger = logging.getLogger(__name__)

#: Exit code of a run stopped by a signal or a stop request after writing its checkpoint
#: (EX_TEMPFAIL: "try again", i.e. resume).
EXIT_INTERRUPTED = 75

STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")

_lock = threading.Lock()
_reason: Optional[str] = None


class TrainingInterrupted(Exception):
    """Training stopped on request; ``checkpoint`` is the file written (or None), ``iteration``
    the number of iterations done."""

    def __init__(self, reason: str, checkpoint: Optional[str] = None, iteration: Optional[int] = None) -> None:
        self.reason = reason
        self.checkpoint = checkpoint
        self.iteration = iteration
        where = f" after iteration {iteration}" if iteration is not None else ""
        saved = f"; checkpoint {checkpoint}" if checkpoint else ""
        super().__init__(f"Training interrupted ({reason}){where}{saved}. Continue with --resume.")


def request_stop(reason: str) -> None:
    """Ask the running trainer to stop at the next step boundary (first reason wins).
    Safe from any thread and from a signal handler."""
    global _reason
    # A signal handler runs in the main thread between bytecodes: never block on the lock there.
    if _lock.acquire(blocking=False):
        try:
            if _reason is None:
                _reason = str(reason)
        finally:
            _lock.release()
    elif _reason is None:
        _reason = str(reason)


def stop_requested() -> Optional[str]:
    """The reason of the pending stop request, or None."""
    return _reason


def clear_stop_request() -> None:
    """Forget a pending request (tests, or a driver that starts a new run in-process)."""
    global _reason
    with _lock:
        _reason = None


def _handler(signum, frame) -> None:
    name = signal.Signals(signum).name
    if signum == signal.SIGINT and _reason is not None:
        raise KeyboardInterrupt  # second Ctrl-C: stop now
    request_stop(f"received {name}")


def install_stop_handlers(signals=STOP_SIGNALS) -> bool:
    """Make ``signals`` request a graceful stop. Only possible in the main thread; returns
    whether the handlers were installed."""
    if threading.current_thread() is not threading.main_thread():
        logger.debug("install_stop_handlers: not in the main thread; handlers not installed.")
        return False
    for name in signals:
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, _handler)
    return True


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Deliver ``sig`` to this process when its parent dies (no orphan ranks)."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            PR_SET_PDEATHSIG = 1
            if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os.kill(os.getpid(), sig)
                return
        except OSError:
            pass

    def _watch() -> None:
        import time

        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os.kill(os.getpid(), sig)
                return

    threading.Thread(target=_watch, name="bridle-parent-watch", daemon=True).start()
