"""VQ: one l2-normalised codebook with cosine lookup and NormEMA updates (BEATs)."""

from typing import Any

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
    ``ẑ + sg(q - ẑ)``. ``codes`` is ``long [..., 1]``.
    ``options``: :class:`~bridle.modeling.quantizers.QuantizerOptions`.
    """

    def __init__(
        self,
        codebook_size: int = 1024,
        code_dim: int = 256,
        **options: Any,
    ) -> None:
        super().__init__(
            num_levels=1,
            codebook_size=codebook_size,
            code_dim=code_dim,
            normalize_input=True,
            normalize_codes=True,
            lookup="cosine",
            **options,
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
