"""Datasets whose items can fail to load.

The DATASET contract (docs/DESIGN.md) says an unreadable item is returned as ``None``: the
loader's collate drops it and counts it in ``batch["num_skipped"]``, so one corrupt file never
stops a run. :class:`RobustItemsMixin` is the one implementation of that rule for every plugin:
it turns the *load errors* of an item into ``None``, counts them and warns once per dataset
(a corrupt shard would otherwise print a warning per item). Errors that are not load errors
(a bug in a transform, a wrong config) still raise.

Counts are per process: with loader workers each worker holds its own copy of the dataset;
``batch["num_skipped"]`` is the run-wide signal.
"""

import logging
from typing import Any, Callable, List, Optional, Tuple, Type

__all__ = ["DATASET_MODES", "RobustItemsMixin", "check_mode"]

logger = logging.getLogger(__name__)

#: The ``mode`` argument of a DATASET entry ``fn(cfg, split, mode)``.
DATASET_MODES = ("pretrain", "finetune", "linear_probe", "eval")


def check_mode(mode: str, entry: str) -> str:
    """Return ``mode`` if it is a valid DATASET/TRANSFORM mode, else raise naming ``entry``."""
    if mode not in DATASET_MODES:
        raise ValueError(f"{entry}: mode must be one of {list(DATASET_MODES)}; got '{mode}'.")
    return mode


class RobustItemsMixin:
    """Mixin for a Dataset: ``self.load_or_none(key, fn, *args)`` returns ``fn(*args)``, or
    ``None`` when it raises one of ``load_errors`` (a missing, truncated or undecodable file).

    ``num_failed`` counts the failures of this dataset object, ``failed_keys`` keeps the first
    ``max_failed_keys`` of them for the report. Subclasses widen ``load_errors`` with their
    decoder's exception types.
    """

    #: Exceptions that mean "this item cannot be read"; anything else propagates.
    load_errors: Tuple[Type[BaseException], ...] = (OSError, EOFError, ValueError, RuntimeError)
    #: How many failed keys to remember (the count itself is unbounded).
    max_failed_keys: int = 100
    #: (key, "ErrorType: message") of the latest failure; the training loader reads it to name
    #: the skipped item (bridle.data.build.SeededItems) and resets it before each item.
    last_failure: Optional[Tuple[Any, str]] = None

    @property
    def num_failed(self) -> int:
        return getattr(self, "_num_failed", 0)

    @property
    def failed_keys(self) -> List[Any]:
        return list(getattr(self, "_failed_keys", []))

    def load_or_none(self, key: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Optional[Any]:
        try:
            return fn(*args, **kwargs)
        except self.load_errors as exc:  # noqa: B030 (a tuple of exception types)
            self.record_failure(key, exc)
            return None

    def record_failure(self, key: Any, exc: BaseException) -> None:
        """Count a failed item; the first failure of this dataset is logged as a warning."""
        self._num_failed = self.num_failed + 1
        self.last_failure = (key, f"{type(exc).__name__}: {exc}")
        keys = getattr(self, "_failed_keys", None)
        if keys is None:
            keys = self._failed_keys = []
        if len(keys) < self.max_failed_keys:
            keys.append(key)
        if self._num_failed == 1:
            logger.warning(
                "%s: cannot read item %s (%s: %s); it is skipped. Further unreadable items of "
                "this dataset are skipped without a warning and counted in .num_failed.",
                type(self).__name__,
                key,
                type(exc).__name__,
                exc,
            )
        else:
            logger.debug("%s: cannot read item %s (%s)", type(self).__name__, key, exc)
