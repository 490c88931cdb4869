"""Interoperability with other codebases' checkpoints (see :mod:`bridle.interop.authors`)."""

from .authors import (
    AUTHORS_ENCODER_PREFIX,
    ConversionReport,
    authors_sincos_table,
    detect_table_layout,
    from_authors,
    to_authors,
)

__all__ = [
    "AUTHORS_ENCODER_PREFIX",
    "ConversionReport",
    "authors_sincos_table",
    "detect_table_layout",
    "from_authors",
    "to_authors",
]
