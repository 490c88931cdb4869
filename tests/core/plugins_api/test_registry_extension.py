"""A package outside the core (tests/core/third_party_pkg, copied to a temp dir and installed
by its own setup.py) registers a QUANTIZER (finite scalar quantization, no codebook), a
BACKBONE (a layer-scale ViT, used by the encoder *and* the tokenizer) and a HEAD; with the toy
modality it runs a BRIDLE schedule, an export and a linear probe through the tools."""

import json
import os
import shutil

import pytest
import torch

from bridle.checkpoint import load_checkpoint_file
from plugins_api_util import REPO, install_package, run_tool
from toy_plugin import toy_opts

PKG = os.path.join(REPO, "tests", "core", "third_party_pkg")

EXTENSION = {
    "MODEL.ENCODER.NAME": "ls_vit",
    "MODEL.TOKENIZER.NAME": "ls_vit",
    "MODEL.QUANTIZER.NAME": "fsq",
    "MODEL.QUANTIZER.NUM_LEVELS": 1,
    "MODEL.QUANTIZER.CODE_DIM": 3,
    "MODEL.QUANTIZER.CODEBOOK_SIZE": 27,
}


@pytest.fixture(scope="module")
def third_party(toy_plugin, tmp_path_factory):
    dst = str(tmp_path_factory.mktemp("pkg") / "third_party_pkg")
    shutil.copytree(PKG, dst, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    return install_package(dst, toy_plugin)


@pytest.mark.slow
def test_third_party_quantizer_backbone_and_head_run_schedule_export_and_probe(third_party, tmp_path):
    listing = run_tool("train_net.py", ["--list"], third_party)
    for entry in ("fsq", "ls_vit", "mlp"):
        assert entry in listing
    assert "[bridle_thirdparty]" in listing
    out = tmp_path / "pre"
    run_tool("train_net.py", toy_opts(str(out), **EXTENSION, **{"SOLVER.MAX_ITER": 2}), third_party)
    enc_phase = load_checkpoint_file(str(out / "2_encoder" / "model_final.pth"))["model"]
    # The tokenizer ran on the registered backbone and quantizer (layer-scale keys, FSQ scale).
    assert "tokenizer.vit.blocks.0.ls1.gamma" in enc_phase and "tokenizer.quantizer.scale" in enc_phase
    assert "encoder.blocks.0.ls1.gamma" in enc_phase
    enc = tmp_path / "encoder.pth"
    meta = json.loads(
        run_tool("export_encoder.py", [out / "2_encoder" / "model_final.pth", enc], third_party)
        .strip()
        .splitlines()[-1]
    )
    assert meta["depth"] == 1
    probe = tmp_path / "probe"
    run_tool(
        "train_net.py",
        toy_opts(
            str(probe),
            **EXTENSION,
            **{
                "TRAINER.NAME": "linear_probe",
                "MODEL.WEIGHTS": enc,
                "MODEL.HEAD.NAME": "mlp",
                "MODEL.HEAD.NUM_CLASSES": 4,
                "DATASETS.TEST": "toy_signals",
                "SOLVER.MAX_ITER": 3,
            },
        ),
        third_party,
    )
    results = json.load(open(probe / "final_results.json"))
    assert 0.0 <= results["last"]["test"]["top1"] <= 1.0
    clf = load_checkpoint_file(str(probe / "model_final.pth"))["model"]
    assert "head.0.weight" in clf and "head.2.weight" in clf  # the registered HEAD
    # The backbone's own (layer-scale) weights came from the export, unchanged by the probe.
    exported = load_checkpoint_file(str(enc))["model"]
    assert torch.equal(clf["encoder.blocks.0.ls1.gamma"], exported["blocks.0.ls1.gamma"])
    assert torch.equal(clf["encoder.blocks.0.ls1.gamma"], enc_phase["encoder.blocks.0.ls1.gamma"])


def test_contracts_name_the_plugin_and_the_protocol():
    """A built component that lacks a required member is refused naming the entry, the package
    that registered it and the bridle.protocols class; optional capabilities are only asked."""
    import torch.nn as nn

    from bridle.config import get_cfg
    from bridle.modeling.quantizers import ResidualQuantizer, build_quantizer
    from bridle.protocols import (
        BookkeepingState,
        CodebookState,
        DeviceTransform,
        InitializableCodebook,
        Quantizer,
        supports,
    )
    from bridle.registry import QUANTIZER

    class NoLevels(nn.Module):
        codebook_size, code_dim = 8, 4

        @classmethod
        def from_config(cls, qcfg):
            return cls()

    if "registry_ext_nolevels" not in QUANTIZER:
        QUANTIZER.register(NoLevels, name="registry_ext_nolevels")
    cfg = get_cfg(load_plugins=False)
    cfg.MODEL.QUANTIZER.NAME = "registry_ext_nolevels"
    cfg.MODEL.QUANTIZER.CODE_DIM = 4
    with pytest.raises(TypeError) as e:
        build_quantizer(cfg)
    msg = str(e.value)
    plugin = NoLevels.__module__.split(".")[0]  # the package that registered it
    assert f"QUANTIZER entry 'registry_ext_nolevels' (MODEL.QUANTIZER.NAME, registered by {plugin})" in msg
    assert "lacks ['num_levels'], required by bridle.protocols.Quantizer" in msg

    rq = ResidualQuantizer(2, 8, 4)
    assert all(supports(rq, c) for c in (Quantizer, InitializableCodebook, CodebookState, BookkeepingState))

    class Plain(nn.Module):  # a codebook-free quantizer: the optional capabilities are absent
        num_levels, codebook_size, code_dim = 1, 8, 4

    assert supports(Plain(), Quantizer) and not supports(Plain(), InitializableCodebook)

    class NoTransform:  # a property that yields None does not count as a device transform
        device_transform = property(lambda self: None)

    assert not supports(NoTransform(), DeviceTransform) and not supports(None, DeviceTransform)
