import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def gate_env(toy_plugin, tmp_path_factory):
    """The toy plugin's environment plus the requeue tests' probe plugin
    (:data:`requeue_helpers.GATE_PLUGIN`, installed as a dist-info in a temp dir) and the
    repository on PYTHONPATH, probes off."""
    from requeue_helpers import EVENTS_ENV, GATE_ENV, write_gate_plugin

    root = write_gate_plugin(str(tmp_path_factory.mktemp("test_gate_plugin")))
    env = dict(toy_plugin)
    env["PYTHONPATH"] = os.pathsep.join([root, REPO, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop(GATE_ENV, None)
    env.pop(EVENTS_ENV, None)
    chosen = env.get("BRIDLE_PLUGINS", "").strip()
    if chosen.lower() not in ("", "all"):  # a plugin selection: add the toy and the probes to it
        names = [] if chosen.lower() == "none" else [n.strip() for n in chosen.split(",") if n.strip()]
        env["BRIDLE_PLUGINS"] = ",".join(names + [n for n in ("toy", "test_gate") if n not in names])
    return env
