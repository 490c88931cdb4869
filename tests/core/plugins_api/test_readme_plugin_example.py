"""docs/plugins.md's "Writing a plugin" example, run verbatim: the files between its plugin-example
markers are written to a temp dir, the package is installed by its own setup.py, listed by
``train_net.py --list`` and trained (a short schedule) with its own config on a manifest."""

import os

import numpy as np
import pytest

from bridle.checkpoint import load_checkpoint_file
from plugins_api_util import REPO, install_package, readme_example_files, run_tool


def _files():
    return readme_example_files(open(os.path.join(REPO, "docs", "plugins.md")).read())


def test_readme_example_is_complete():
    files = _files()
    assert set(files) == {"my-signals/my_signals/__init__.py", "my-signals/setup.py", "my-signals/signals_tiny.yaml"}
    for path, text in files.items():
        if path.endswith(".py"):
            compile(text, path, "exec")  # syntax
    assert "from setuptools import setup" in files["my-signals/setup.py"]
    assert "bridle.plugins" in files["my-signals/setup.py"]


def _write_manifest(root, n=32, length=300):
    data = os.path.join(root, "data")
    os.makedirs(data)
    rng = np.random.default_rng(0)
    with open(os.path.join(data, "train.csv"), "w") as f:
        f.write("path,label\n")
        for i in range(n):
            np.save(os.path.join(data, f"s{i}.npy"), rng.standard_normal(length - 10 * (i % 3)).astype(np.float32))
            f.write(f"s{i}.npy,{i % 2}\n")
        f.write("missing.npy,0\n")  # unreadable: the dataset returns None and the loader skips it
    return os.path.join(data, "train.csv")


@pytest.mark.slow
def test_readme_plugin_example_installs_lists_and_trains(tmp_path):
    for path, text in _files().items():
        dst = tmp_path / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(text)
    pkg = str(tmp_path / "my-signals")
    env = install_package(pkg)
    listing = run_tool("train_net.py", ["--list"], env)
    assert "signal1d" in listing and "[my_signals]" in listing
    manifest = _write_manifest(str(tmp_path))
    out = tmp_path / "out"
    run_tool(
        "train_net.py",
        [
            "--config-file",
            os.path.join(pkg, "signals_tiny.yaml"),
            "DATASETS.SIGNALS.TRAIN_MANIFEST",
            manifest,
            "OUTPUT_DIR",
            out,
            "MODEL.DEVICE",
            "cpu",
            "SOLVER.MAX_ITER",
            2,
            "PROGRESS_BAR",
            False,
        ],
        env,
    )
    for phase in ("0_encoder_cold", "1_tokenizer", "2_encoder"):
        ckpt = load_checkpoint_file(str(out / phase / "model_final.pth"))
        assert ckpt["iteration"] == 2, phase  # iterations done
