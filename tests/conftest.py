import os

import pytest

from toy_plugin import TOY_SITE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: an end-to-end test that takes more than ~20 s (runs in CI too)")


@pytest.fixture(scope="session")
def toy_plugin():
    """The third-party toy plugin (tests/toy_site, on this process's import path through
    pytest's ``pythonpath``), loaded here; returns the environment to run tools/train_net.py
    with it (tests/toy_site on PYTHONPATH)."""
    from bridle.plugins import load_plugins

    load_plugins(force=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([TOY_SITE, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env
