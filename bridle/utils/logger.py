import logging
import os
import sys

_configured = set()


def setup_logger(output_dir: str = "", rank: int = 0, name: str = "bridle") -> logging.Logger:
    """Console (main process only) + file logging for the ``bridle`` logger tree and plugins."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    key = (name, output_dir, rank)
    if key in _configured:
        return logger
    for h in list(logger.handlers):
        logger.removeHandler(h)
    fmt = logging.Formatter("[%(asctime)s %(name)s %(levelname)s] %(message)s", datefmt="%m/%d %H:%M:%S")
    if rank == 0:
        ch = logging.StreamHandler(stream=sys.stdout)
        ch.setFormatter(fmt)
        logger.addHandler(ch)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        fname = os.path.join(output_dir, "log.txt" if rank == 0 else f"log.txt.rank{rank}")
        fh = logging.FileHandler(fname)
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    _configured.add(key)
    return logger
