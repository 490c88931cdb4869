"""VQ: one l2-normalised codebook with cosine lookup and NormEMA updates (BEATs)."""
from bridle.registry import QUANTIZER

from .base import CodebookQuantizer

__all__ = ["VectorQuantizer"]


@QUANTIZER.register(name="vq")
class VectorQuantizer(CodebookQuantizer):
    """Normalised vector quantizer (BEATs "NormEMA"), the one-level case of
    :class:`~bridle.modeling.quantizers.base.CodebookQuantizer`.

    Inputs and codes are l2-normalised and compared by cosine similarity. EMA step per code with
    assigned rows: ``w <- normalize(decay * w + (1 - decay) * normalize(mean of its rows))``.
    Loss ``mse(q, sg ẑ) + beta * mse(sg q, ẑ)`` with ``ẑ = normalize(z)``; ``quantized`` is
    ``ẑ + sg(q - ẑ)``. ``codes`` is ``long [..., 1]``. Keyword arguments as in the base class.
    """

    def __init__(
        self,
        codebook_size: int = 1024,
        code_dim: int = 256,
        *,
        ema: bool = True,
        decay: float = 0.99,
        commitment: float = 0.25,
        init: str = "kmeans",
        init_weight_multiplier: float = 1.0,
        kmeans_iters: int = 10,
        restart_dead_codes: bool = True,
        dead_code_threshold: float = 1.0,
        dead_code_window: int = 20,
        restart_period: int = 10,
        soft_codes: int = 1,
    ) -> None:
        super().__init__(
            num_levels=1,
            codebook_size=codebook_size,
            code_dim=code_dim,
            normalize_input=True,
            normalize_codes=True,
            lookup="cosine",
            ema=ema,
            decay=decay,
            commitment=commitment,
            init=init,
            init_weight_multiplier=init_weight_multiplier,
            kmeans_iters=kmeans_iters,
            restart_dead_codes=restart_dead_codes,
            dead_code_threshold=dead_code_threshold,
            dead_code_window=dead_code_window,
            restart_period=restart_period,
            soft_codes=soft_codes,
        )

    @classmethod
    def from_config(cls, qcfg) -> "VectorQuantizer":
        """Build from ``cfg.MODEL.QUANTIZER`` (``NUM_LEVELS`` must be 1; ``LOOKUP`` is ignored:
        VQ is always cosine on normalised inputs)."""
        if int(qcfg.NUM_LEVELS) != 1:
            raise ValueError(
                f"MODEL.QUANTIZER.NAME 'vq' has a single codebook: set MODEL.QUANTIZER.NUM_LEVELS 1 "
                f"(got {qcfg.NUM_LEVELS}), or use NAME 'rq' for residual levels."
            )
        return cls(**cls.config_kwargs(qcfg))
