import importlib
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: an end-to-end test that takes more than ~20 s (runs in CI too)")


@pytest.fixture(scope="session")
def toy_plugin(tmp_path_factory):
    """The third-party toy plugin, installed (dist-info on sys.path / PYTHONPATH) for this
    session; returns the environment to run tools/train_net.py with it."""
    from toy_plugin import write_toy_plugin

    root = write_toy_plugin(str(tmp_path_factory.mktemp("third_party")))
    sys.path.insert(0, root)
    importlib.invalidate_caches()
    from bridle.plugins import load_plugins

    load_plugins(force=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env
