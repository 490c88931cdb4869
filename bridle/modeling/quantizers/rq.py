"""RQ: residual quantization over ``num_levels`` codebooks (RQ-VAE style; by default the
authors' RQ with unit codes and a normalised lookup per level)."""
from bridle.registry import QUANTIZER

from .base import CodebookQuantizer

__all__ = ["ResidualQuantizer"]


@QUANTIZER.register(name="rq")
class ResidualQuantizer(CodebookQuantizer):
    """Residual quantizer, the multi-level case of
    :class:`~bridle.modeling.quantizers.base.CodebookQuantizer`.

    With ``r_1 = z`` (raw): level ``l`` picks a code for ``r_l``, adds its vector ``q_l`` and
    passes the raw ``r_{l+1} = r_l - q_l`` on. Output ``quantized = z + sg(Σ q_l - z)``; loss =
    mean over levels of ``mse(q_l, sg r_l) + beta * mse(sg q_l, r_l)`` on the raw residuals.

    ``lookup``:
      * ``"unit"`` (default; the authors' RQ, SPEC §3): unit-length codes; level ``l`` picks the
        code nearest to ``r_l / ||r_l||``; ``q_l`` is the unit code; spherical k-means on the
        normalised rows; EMA ``w <- normalize(decay * w + (1 - decay) * normalize(mean of the
        normalised rows))``.
      * ``"euclidean"``: codes keep lengths (EMA of the mean of their raw rows), Euclidean
        nearest code and k-means. Lower reconstruction error, but not the paper's targets.
      * ``"cosine"``: codes keep lengths, the code is chosen by cosine to the normalised residual.
    Other keyword arguments as in the base class.
    """

    def __init__(
        self,
        num_levels: int = 4,
        codebook_size: int = 256,
        code_dim: int = 256,
        *,
        lookup: str = "unit",
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
            num_levels=num_levels,
            codebook_size=codebook_size,
            code_dim=code_dim,
            normalize_input=False,
            normalize_codes=lookup == "unit",
            lookup=lookup,
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
    def from_config(cls, qcfg) -> "ResidualQuantizer":
        """Build from ``cfg.MODEL.QUANTIZER``."""
        return cls(num_levels=int(qcfg.NUM_LEVELS), lookup=str(qcfg.LOOKUP), **cls.config_kwargs(qcfg))
