import os

from bridle.config import get_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _flat(node, prefix=""):
    for k, v in node.items():
        if hasattr(v, "items"):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def _bundled_cfg():
    """Core defaults plus the three bundled plugins' keys (not third-party test plugins)."""
    import importlib

    cfg = get_cfg(load_plugins=False)
    for name in ("bridle_audio", "bridle_image", "bridle_video"):
        importlib.import_module(name).add_config(cfg)
    return cfg


def test_readme_config_reference_lists_every_key():
    readme = open(os.path.join(REPO, "README.md")).read()
    missing = [k for k in _flat(_bundled_cfg()) if f"`{k}`" not in readme and not k.startswith("PRETRAIN.PHASES.")]
    assert not missing, f"README config reference lacks {missing}; run tools/config_reference.py"


def test_readme_quickstart_has_the_two_commands():
    readme = open(os.path.join(REPO, "README.md")).read()
    quick = readme.split("## Quickstart", 1)[1].split("##", 1)[0]
    assert "make demo" in quick and "make test" in quick
    assert "make test" in open(os.path.join(REPO, ".ci", "run")).read()
