"""RQ: residual quantization over ``num_levels`` codebooks (RQ-VAE style; by default the
authors' RQ with unit codes and a normalised lookup per level)."""

from typing import Any

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
      * ``"unit"`` (default; the authors' RQ): unit-length codes; level ``l`` picks the
        code nearest to ``r_l / ||r_l||``; ``q_l`` is the unit code; spherical k-means on the
        normalised rows; EMA ``w <- normalize(decay * w + (1 - decay) * normalize(mean of the
        normalised rows))``.
      * ``"euclidean"``: codes keep lengths (EMA of the mean of their raw rows), Euclidean
        nearest code and k-means. Lower reconstruction error, but not the paper's targets.
      * ``"cosine"``: codes keep lengths, the code is chosen by cosine to the normalised residual.
    ``options``: :class:`~bridle.modeling.quantizers.QuantizerOptions`.
    """

    def __init__(
        self,
        num_levels: int = 4,
        codebook_size: int = 256,
        code_dim: int = 256,
        *,
        lookup: str = "unit",
        **options: Any,
    ) -> None:
        super().__init__(
            num_levels=num_levels,
            codebook_size=codebook_size,
            code_dim=code_dim,
            normalize_input=False,
            normalize_codes=lookup == "unit",
            lookup=lookup,
            **options,
        )

    @classmethod
    def from_config(cls, qcfg) -> "ResidualQuantizer":
        """Build from ``cfg.MODEL.QUANTIZER``."""
        return cls(num_levels=int(qcfg.NUM_LEVELS), lookup=str(qcfg.LOOKUP), **cls.config_kwargs(qcfg))
