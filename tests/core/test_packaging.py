"""Packaging: the core distribution ``bridle`` needs no audio or video library, and each bundled
modality plugin is a distribution of its own, declared exactly like a third-party plugin (its own
setup.py, its dependencies, its ``bridle.plugins`` entry point).

The metadata is what pip would install: each setup.py's ``egg_info`` output (requires.txt,
entry_points.txt, top_level.txt), written to a temp dir."""

import ast
import configparser
import os
import re
import subprocess
import sys
from importlib.metadata import packages_distributions

import pytest

from toy_plugin import toy_opts

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGINS = {"audio": "bridle_audio", "image": "bridle_image", "video": "bridle_video"}
# Libraries only a modality needs: never a requirement of the core.
# Tools a plugin imports only behind a check, installed by `make setup` outside install_requires:
# hearvalidator 2021.0.6 declares Python < 3.9 and TensorFlow, so it is installed with
# --no-deps --ignore-requires-python and only bridle_audio.hear_validate imports it.
OPTIONAL_TOOLS = {"audio": {"hearvalidator"}}
MODALITY_LIBS = ("decord", "pytorchvideo", "soundfile", "torchaudio", "av")
# What each plugin must declare itself (the core does not bring them).
PLUGIN_LIBS = {
    "audio": {"torchaudio", "soundfile"},
    "image": {"torchvision", "pillow"},
    "video": {"decord", "pytorchvideo"},
}


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement line (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0]).lower()


def _egg_info(src_dir, out_dir):
    r = subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(out_dir)],
        cwd=src_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"setup.py egg_info in {src_dir} failed:\n{r.stderr[-2000:]}"
    (info,) = [os.path.join(out_dir, d) for d in os.listdir(out_dir) if d.endswith(".egg-info")]

    def read(name):
        path = os.path.join(info, name)
        return open(path).read() if os.path.exists(path) else ""

    requires, extras, section = [], {}, None
    for line in read("requires.txt").splitlines():
        if line.startswith("["):
            section = line.strip("[]")
            extras[section] = []
        elif line.strip():
            (extras[section] if section else requires).append(_name(line))
    eps = configparser.ConfigParser(delimiters=("=",))
    eps.optionxform = str
    eps.read_string(read("entry_points.txt"))
    plugin_eps = {k: v.strip() for k, v in eps["bridle.plugins"].items()} if eps.has_section("bridle.plugins") else {}
    pkg_info = read("PKG-INFO")
    dist_name = re.search(r"^Name: (.+)$", pkg_info, re.M).group(1).strip()
    return {
        "name": dist_name,
        "requires": requires,
        "extras": extras,
        "entry_points": plugin_eps,
        "top_level": read("top_level.txt").split(),
    }


@pytest.fixture(scope="module")
def metadata(tmp_path_factory):
    out = {"core": _egg_info(REPO, tmp_path_factory.mktemp("core"))}
    for modality in PLUGINS:
        out[modality] = _egg_info(os.path.join(REPO, "plugins", modality), tmp_path_factory.mktemp(modality))
    return out


def _third_party_imports(package_dir):
    """Top-level names of the absolute imports in every .py file under ``package_dir``."""
    names = set()
    for root, _, files in os.walk(package_dir):
        for f in files:
            if not f.endswith(".py"):
                continue
            tree = ast.parse(open(os.path.join(root, f)).read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names.add(node.module.split(".")[0])
    first_party = {"bridle", *PLUGINS.values()}
    return {n for n in names if n not in sys.stdlib_module_names and n not in first_party}


def _distributions(modules):
    dists = packages_distributions()
    return {m: {_name(d) for d in dists.get(m, [m])} for m in modules}


def test_core_requires_no_modality_library(metadata):
    core = metadata["core"]
    assert core["name"] == "bridle"
    assert not set(MODALITY_LIBS) & set(core["requires"]), core["requires"]
    # The core ships only the core package and declares no plugin.
    assert core["top_level"] == ["bridle"] and core["entry_points"] == {}
    # Development tools stay one extra away: pip install -e ".[dev]".
    assert {"pytest", "ruff", "hypothesis", "vector-quantize-pytorch"} <= set(core["extras"]["dev"])


def test_every_library_the_core_imports_is_a_core_requirement(metadata):
    declared = set(metadata["core"]["requires"])
    imports = _distributions(_third_party_imports(os.path.join(REPO, "bridle")))
    undeclared = {m: sorted(d) for m, d in imports.items() if not d & declared}
    assert not undeclared, f"bridle/ imports these, not in the core's install_requires: {undeclared}"


@pytest.mark.parametrize("modality", sorted(PLUGINS))
def test_each_plugin_is_its_own_distribution_with_its_entry_point(metadata, modality):
    pkg = PLUGINS[modality]
    meta = metadata[modality]
    assert meta["name"] == f"bridle-{modality}"
    assert meta["entry_points"] == {modality: pkg}
    assert meta["top_level"] == [pkg]
    assert PLUGIN_LIBS[modality] <= set(meta["requires"]), meta["requires"]
    # Whatever the plugin imports comes from the plugin's own requirements or the core's.
    declared = set(meta["requires"]) | set(metadata["core"]["requires"])
    plugin_dir = os.path.join(REPO, "plugins", modality, pkg)
    imports = _distributions(_third_party_imports(plugin_dir) - OPTIONAL_TOOLS.get(modality, set()))
    undeclared = {m: sorted(d) for m, d in imports.items() if not d & declared}
    assert not undeclared, f"{pkg} imports these, declared by neither it nor the core: {undeclared}"


def test_plugins_lay_out_like_a_third_party_package():
    """Each plugin directory is an installable project on its own, as tools/new_plugin.py writes one."""
    for modality, pkg in PLUGINS.items():
        root = os.path.join(REPO, "plugins", modality)
        assert os.path.isfile(os.path.join(root, "setup.py"))
        assert os.path.isfile(os.path.join(root, pkg, "__init__.py"))
        src = open(os.path.join(root, "setup.py")).read()
        assert f'"bridle.plugins": ["{modality} = {pkg}"]' in src


# Makes the modality libraries unimportable, as on a machine where they are not installed.
BLOCK_MODALITY_LIBS = "import sys\nfor _m in {libs!r}:\n    sys.modules[_m] = None\n"


@pytest.mark.slow
def test_core_trains_a_toy_modality_without_audio_or_video_libraries(toy_plugin, tmp_path):
    """With the bundled plugins disabled (BRIDLE_PLUGINS) and the audio and video libraries
    unimportable, tools/train_net.py still lists the core and pretrains the third-party toy modality."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_MODALITY_LIBS.format(libs=MODALITY_LIBS))
    env = dict(toy_plugin, BRIDLE_PLUGINS="toy")
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    train = [sys.executable, os.path.join(REPO, "tools", "train_net.py")]

    probe = subprocess.run([sys.executable, "-c", "import torchaudio"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "torchaudio" in probe.stderr  # the block is in force

    r = subprocess.run(train + ["--list"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[bridle]" in r.stdout and "[bridle_toy]" in r.stdout
    assert not any(f"[{pkg}]" in r.stdout for pkg in PLUGINS.values())

    out = str(tmp_path / "run")
    opts = toy_opts(out, **{"TRAINER.NAME": "encoder", "MODEL.TOKENIZER.COLD_START": True, "SOLVER.MAX_ITER": 2})
    r = subprocess.run(train + opts, env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert os.path.exists(os.path.join(out, "model_final.pth"))
