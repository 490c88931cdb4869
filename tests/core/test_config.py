import os
import subprocess

import pytest

from bridle.config import ConfigError, get_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_unknown_key_on_command_line_suggests_nearest():
    cfg = get_cfg()
    with pytest.raises(ConfigError) as e:
        cfg.merge_from_list(["SOLVER.BASE_LRR", "0.1"])
    msg = str(e.value)
    assert "SOLVER.BASE_LRR" in msg and "SOLVER.BASE_LR" in msg and "command-line" in msg


def test_unknown_key_in_file_names_the_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("MODEL:\n  QUANTIZER:\n    CODEBOK_SIZE: 12\n")
    cfg = get_cfg()
    with pytest.raises(ConfigError) as e:
        cfg.merge_from_file(str(f))
    assert str(f) in str(e.value) and "MODEL.QUANTIZER.CODEBOOK_SIZE" in str(e.value)


def test_base_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("SOLVER:\n  BASE_LR: 0.5\n  EPOCHS: 3.0\n")
    (tmp_path / "child.yaml").write_text("_BASE_: base.yaml\nSOLVER:\n  EPOCHS: 7.0\n")
    cfg = get_cfg()
    cfg.merge_from_file(str(tmp_path / "child.yaml"))
    cfg.merge_from_list(["SOLVER.WEIGHT_DECAY", "0.01"])
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.EPOCHS, cfg.SOLVER.WEIGHT_DECAY) == (0.5, 7.0, 0.01)


def test_missing_config_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        get_cfg().merge_from_file(str(tmp_path / "nope.yaml"))


def test_odd_number_of_overrides():
    with pytest.raises(ValueError, match="KEY VALUE"):
        get_cfg().merge_from_list(["SOLVER.BASE_LR"])


def test_every_plugin_adds_its_keys():
    cfg = get_cfg()
    for key in ("AUDIO", "IMAGE", "VIDEO"):
        assert key in cfg.INPUT or key in cfg.DATASETS, f"plugin keys for {key} missing"


def test_every_default_key_has_a_comment():
    """Each key of the core defaults is declared once with a comment just above it."""
    path = os.path.join(REPO, "bridle", "config", "defaults.py")
    lines = open(path).read().splitlines()
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("_C.") and "= CN()" not in s and not s.startswith("_C.PRETRAIN.PHASES["):
            assert lines[i - 1].strip().startswith("#") or "#" in line, f"no comment for {s}"
    keys = [l.split("=")[0].strip() for l in lines if l.strip().startswith("_C.") and "=" in l]
    assert len(keys) == len(set(keys)), "a key is declared twice"


def test_core_has_no_modality_branch():
    out = subprocess.run(
        ["grep", "-rliE", "audio|image|video|spectrogram|tubelet", "--include=*.py", "bridle"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "", f"modality words in the core: {out.stdout}"
