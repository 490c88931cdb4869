"""The training options shared by every codebook quantizer, in one place: their defaults,
their checks and how they are read from ``cfg.MODEL.QUANTIZER`` (see docs/quantizers.md)."""

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict

__all__ = ["QuantizerOptions", "INIT_METHODS"]

#: ``kmeans``: k-means seeded with distinct random rows of the first batch (the authors');
#: ``kmeans++``: k-means++-style seeding; ``uniform`` / ``normal``: random codes.
INIT_METHODS = ("kmeans", "kmeans++", "uniform", "normal")


@dataclass(frozen=True)
class QuantizerOptions:
    """Keyword arguments of :class:`~bridle.modeling.quantizers.CodebookQuantizer` (and of VQ
    and RQ) besides the sizes and the lookup; each is the lower-case name of a
    ``MODEL.QUANTIZER`` key.

    ema: update the codebooks by EMA (buffer); False makes them an ``nn.Parameter`` trained by
        the codebook term of the loss.
    decay: EMA decay of the codes.
    commitment: weight ``beta`` of the commitment term.
    init: ``"kmeans"`` (k-means per level, seeded with distinct random rows, on the first
        training batch or on ``init_codebook``'s data), ``"kmeans++"`` (k-means++-style seeding),
        ``"uniform"`` (``U[0,1) * init_weight_multiplier``) or ``"normal"`` (``N(0,1) *
        multiplier``). Random inits fix code directions (unit codes are their normalised draw);
        with ``normalize_codes=False`` the first training batch sets each code's length to the
        mean projection of its rows.
    init_weight_multiplier: scale of the random init.
    kmeans_iters: k-means iterations.
    restart_dead_codes: replace dead codes by random level inputs of the batch.
    dead_code_threshold: a code is dead when it got fewer rows than this over the window.
    dead_code_window: training forwards over which usage is counted.
    restart_period: look for dead codes every this many training forwards.
    soft_codes: ``k``; when > 1, ``QuantizerOutput.soft_codes`` holds the top-k codes per level.
    """

    ema: bool = True
    decay: float = 0.99
    commitment: float = 0.25
    init: str = "kmeans"
    init_weight_multiplier: float = 1.0
    kmeans_iters: int = 10
    restart_dead_codes: bool = True
    dead_code_threshold: float = 1.0
    dead_code_window: int = 20
    restart_period: int = 10
    soft_codes: int = 1

    def __post_init__(self) -> None:
        # Normalise the types (configs and callers may pass numpy / yacs values).
        for f in fields(self):
            object.__setattr__(self, f.name, _TYPES[f.name](getattr(self, f.name)))

    @classmethod
    def from_config(cls, qcfg) -> "QuantizerOptions":
        """The options of ``cfg.MODEL.QUANTIZER`` (key = upper-case field name)."""
        return cls(**{f.name: getattr(qcfg, f.name.upper()) for f in fields(cls)})

    def as_kwargs(self) -> Dict[str, Any]:
        return asdict(self)

    def validate(self, codebook_size: int) -> None:
        """Raise a ValueError naming the MODEL.QUANTIZER key of an out-of-range option."""
        if self.init not in INIT_METHODS:
            raise ValueError(f"MODEL.QUANTIZER.INIT must be one of {INIT_METHODS}; got '{self.init}'")
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"MODEL.QUANTIZER.DECAY must be in [0, 1); got {self.decay}")
        if not 1 <= self.soft_codes <= codebook_size:
            raise ValueError(
                f"MODEL.QUANTIZER.SOFT_CODES must be in [1, CODEBOOK_SIZE={codebook_size}]; got {self.soft_codes}"
            )
        if self.restart_period < 1:
            raise ValueError(f"MODEL.QUANTIZER.RESTART_PERIOD must be >= 1; got {self.restart_period}")
        if self.dead_code_window < 1:
            raise ValueError(f"MODEL.QUANTIZER.DEAD_CODE_WINDOW must be >= 1 (forwards); got {self.dead_code_window}")
        if self.kmeans_iters < 0:
            raise ValueError(f"MODEL.QUANTIZER.KMEANS_ITERS must be >= 0; got {self.kmeans_iters}")


_TYPES = {f.name: f.type for f in fields(QuantizerOptions)}
