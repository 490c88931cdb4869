"""Fixtures of the downstream tests; the toy datasets live in downstream_toy.py."""

import pytest

import downstream_toy  # noqa: F401  (registers the toy DATASET / TRANSFORM entries)
from downstream_toy import tiny_cfg


@pytest.fixture
def make_cfg(tmp_path):
    def _make(*opts, sub="run"):
        return tiny_cfg(tmp_path / sub, *opts)

    return _make
