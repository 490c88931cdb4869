import os

from bridle.config import flatten_cfg, get_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bundled_cfg():
    """Core defaults plus the three bundled plugins' keys (not third-party test plugins)."""
    import importlib

    cfg = get_cfg(load_plugins=False)
    for name in ("bridle_audio", "bridle_image", "bridle_video"):
        importlib.import_module(name).add_config(cfg)
    return cfg


def test_config_reference_page_lists_every_key():
    page = open(os.path.join(REPO, "docs", "config.md")).read()
    missing = [k for k in flatten_cfg(_bundled_cfg()) if f"`{k}`" not in page and not k.startswith("PRETRAIN.PHASES.")]
    assert not missing, f"docs/config.md lacks {missing}; run tools/config_reference.py"


def test_readme_quickstart_has_the_two_commands():
    readme = open(os.path.join(REPO, "README.md")).read()
    quick = readme.split("## Quickstart", 1)[1].split("##", 1)[0]
    assert "make demo" in quick and "make test" in quick
    assert "make test" in open(os.path.join(REPO, ".ci", "run")).read()


def test_config_reference_keeps_comments_through_local_aliases():
    from bridle.config.reference import config_comments

    source = """
from bridle.config import CfgNode as CN


def add_config(c):
    c.DATASETS.IMU = CN()
    d = c.DATASETS.IMU
    # Root of the CSV files.
    d.ROOT = ""
    d.RATE = 100  # samples per second
    c.INPUT.IMU = i = CN()
    i.CHANNELS = 3  # accelerometer axes
    span = CN()
    span.LENGTH = 4  # patches per masked span
    i.SPAN = span
    extra = c.INPUT.IMU.SPAN
    extra.MIN = 1  # shortest span
"""
    got = config_comments(source)
    assert got == {
        "DATASETS.IMU.ROOT": "Root of the CSV files.",
        "DATASETS.IMU.RATE": "samples per second",
        "INPUT.IMU.CHANNELS": "accelerometer axes",
        "INPUT.IMU.SPAN.LENGTH": "patches per masked span",
        "INPUT.IMU.SPAN.MIN": "shortest span",
    }
