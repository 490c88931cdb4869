import os
import subprocess
import sys

import pytest

from bridle.plugins import ENV_VAR, available_plugins, load_plugins
from bridle.registry import Registry

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_registry_names_origin_and_suggestions():
    reg = Registry("TEST")

    @reg.register(name="my_thing")
    def f():
        return 1

    reg.register(f, name="my_thing")  # the same object again: idempotent
    assert reg.get("my_thing") is f and reg.origin("my_thing") == __name__.split(".")[0]
    with pytest.raises(KeyError, match="my_thing"):
        reg.get("my_thng")
    with pytest.raises(AssertionError):
        reg.register(lambda: 2, name="my_thing")  # a different object under a taken name


def test_all_three_plugins_are_installed_and_loaded():
    assert {"audio", "image", "video"} <= set(available_plugins())
    loaded = load_plugins()
    assert {"audio", "image", "video"} <= set(loaded)
    assert load_plugins() == loaded  # idempotent


def _run_py(code, **env):
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, cwd=REPO)


def test_env_var_selects_and_disables_plugins():
    code = "from bridle.plugins import load_plugins; print(sorted(load_plugins()))"
    assert _run_py(code, BRIDLE_PLUGINS="none").stdout.strip() == "[]"
    assert _run_py(code, BRIDLE_PLUGINS="image").stdout.strip() == "['image']"
    r = _run_py(code, BRIDLE_PLUGINS="nosuch")
    assert r.returncode != 0 and "nosuch" in r.stderr and ENV_VAR in r.stderr


def test_broken_plugin_error_names_plugin_and_switch(tmp_path):
    pkg = tmp_path / "bridle_broken"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('missing dependency xyz')\n")
    info = tmp_path / "bridle_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bridle-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bridle.plugins]\nbroken = bridle_broken\n")
    code = "from bridle.plugins import load_plugins; load_plugins()"
    r = _run_py(code, PYTHONPATH=str(tmp_path))
    assert r.returncode != 0
    assert "'broken'" in r.stderr and "xyz" in r.stderr and "BRIDLE_PLUGINS" in r.stderr
    ok = _run_py(code, PYTHONPATH=str(tmp_path), BRIDLE_PLUGINS="audio,image,video")
    assert ok.returncode == 0, ok.stderr


def test_list_shows_registries_with_entries_from_all_plugins():
    r = subprocess.run([sys.executable, "tools/train_net.py", "--list"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for reg in (
        "BACKBONE",
        "PATCH_EMBED",
        "MASK_GENERATOR",
        "QUANTIZER",
        "TRAINER",
        "DATASET",
        "TRANSFORM",
        "EVALUATOR",
        "SAMPLER",
    ):
        assert reg in out
    for origin in ("[bridle]", "[bridle_audio]", "[bridle_image]", "[bridle_video]"):
        assert origin in out, f"no entry from {origin}"
    # The one-liners state the contracts the builders really call.
    assert "BACKBONE  (fn(cfg, node) -> nn.Module" in out and "HEAD  (fn(cfg, in_dim, num_classes)" in out
    assert "cls(cfg, phase)" in out and "by the 'finetune' trainer only" in out
