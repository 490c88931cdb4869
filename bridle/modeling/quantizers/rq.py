"""RQ: residual quantization over ``num_levels`` cosine-lookup codebooks (RQ-VAE style)."""
from bridle.registry import QUANTIZER

from .base import CodebookQuantizer

__all__ = ["ResidualQuantizer"]


@QUANTIZER.register(name="rq")
class ResidualQuantizer(CodebookQuantizer):
    """Residual quantizer, the multi-level case of
    :class:`~bridle.modeling.quantizers.base.CodebookQuantizer`.

    With ``r_1 = z``: level ``l`` picks the code nearest to ``r_l``, adds its vector ``q_l`` and
    passes ``r_{l+1} = r_l - q_l`` on. Codes keep their lengths (the EMA mean of their raw rows,
    ``w <- decay * w + (1 - decay) * mean``), so the reconstruction error decreases level after
    level. ``lookup="euclidean"`` (default) compares raw residuals with codes and initialises by
    Euclidean k-means; ``lookup="cosine"`` normalises each level's residual (and the codes) to
    choose a code and initialises by cosine k-means. The base module's docstring explains the
    choice. Output ``quantized = z + sg(Σ q_l - z)``; loss = mean over levels of
    ``mse(q_l, sg r_l) + beta * mse(sg q_l, r_l)``. Other keyword arguments as in the base class.
    """

    def __init__(
        self,
        num_levels: int = 4,
        codebook_size: int = 256,
        code_dim: int = 256,
        *,
        lookup: str = "euclidean",
        ema: bool = True,
        decay: float = 0.99,
        commitment: float = 0.25,
        init: str = "kmeans",
        init_weight_multiplier: float = 1.0,
        kmeans_iters: int = 10,
        restart_dead_codes: bool = True,
        dead_code_threshold: float = 1e-3,
        restart_period: int = 100,
        soft_codes: int = 1,
    ) -> None:
        super().__init__(
            num_levels=num_levels,
            codebook_size=codebook_size,
            code_dim=code_dim,
            normalize_input=False,
            normalize_codes=False,
            lookup=lookup,
            ema=ema,
            decay=decay,
            commitment=commitment,
            init=init,
            init_weight_multiplier=init_weight_multiplier,
            kmeans_iters=kmeans_iters,
            restart_dead_codes=restart_dead_codes,
            dead_code_threshold=dead_code_threshold,
            restart_period=restart_period,
            soft_codes=soft_codes,
        )

    @classmethod
    def from_config(cls, qcfg) -> "ResidualQuantizer":
        """Build from ``cfg.MODEL.QUANTIZER``."""
        return cls(num_levels=int(qcfg.NUM_LEVELS), lookup=str(qcfg.LOOKUP), **cls.config_kwargs(qcfg))
