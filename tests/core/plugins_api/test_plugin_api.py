"""The plugin API's contracts, each checked where it is built: errors name the registered
entry and what it lacks; add_config may live in a plugin's ``config`` submodule; unknown
namespaces name the loaded plugins; the config package imports no trainer; a tokenizer phase
re-initialises only the state a quantizer declares as its codebook."""

import importlib
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from bridle.config import ConfigError, get_cfg
from bridle.plugins import plugin_add_config
from bridle.registry import BACKBONE, DATASET, HEAD, MASK_GENERATOR, META_ARCH, QUANTIZER
from plugins_api_util import REPO
from toy_plugin import toy_opts


def toy_cfg(tmp_path, **extra):
    cfg = get_cfg()
    cfg.merge_from_list(toy_opts(str(tmp_path / "out"), **extra))
    return cfg


def test_config_package_imports_no_trainer_and_registries_fill_themselves():
    code = (
        "import sys; from bridle.config import get_cfg; get_cfg(); "
        "print('bridle.trainers' in sys.modules, 'bridle.checkpoint' in sys.modules, 'bridle.engine' in sys.modules); "
        "from bridle.registry import TRAINER, EVALUATOR; print(sorted(TRAINER.names())); print('accuracy' in EVALUATOR)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, BRIDLE_PLUGINS="none"),
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "False False False"
    assert lines[1] == str(["encoder", "finetune", "joint", "linear_probe", "schedule", "tokenizer"])
    assert lines[2] == "True"


def test_add_config_is_found_in_the_plugin_config_submodule(tmp_path, monkeypatch):
    pkg = tmp_path / "bridle_cfgsub"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("# registers nothing, declares keys in config.py\n")
    (pkg / "config.py").write_text(
        "from bridle.config import CfgNode as CN\n\n\ndef add_config(cfg):\n"
        "    cfg.DATASETS.CFGSUB = CN()\n    cfg.DATASETS.CFGSUB.ROOT = ''  # where the data lives\n"
    )
    (tmp_path / "plain_plugin.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("bridle_cfgsub")
    add = plugin_add_config(mod)
    assert add is importlib.import_module("bridle_cfgsub.config").add_config
    cfg = get_cfg(load_plugins=False)
    add(cfg)
    assert cfg.DATASETS.CFGSUB.ROOT == ""
    assert plugin_add_config(importlib.import_module("plain_plugin")) is None


def test_unknown_namespace_names_loaded_plugins_and_the_switch():
    cfg = get_cfg()
    with pytest.raises(ConfigError) as e:
        cfg.merge_from_list(["DATASETS.IMU.ROOT", "x"])
    msg = str(e.value)
    assert "No loaded plugin declares the namespace 'DATASETS.IMU'" in msg
    assert "BRIDLE_PLUGINS" in msg and "'image'" in msg and "config' submodule" in msg
    with pytest.raises(ConfigError) as e:
        cfg.merge_from_list(["SOLVER.BASE_LRR", "1"])
    assert "SOLVER.BASE_LR" in str(e.value) and "plugin" not in str(e.value)


def test_dataset_len_that_is_not_an_int_names_the_entry(toy_plugin, tmp_path):
    class NoLen(torch.utils.data.Dataset):
        def __len__(self):
            return ...  # the old README example

        def __getitem__(self, i):
            return {"input": torch.zeros(4)}

    if "plugins_api_no_len" not in DATASET:
        DATASET.register(lambda cfg, split, mode: NoLen(), name="plugins_api_no_len")
    from bridle.data.build import build_dataset

    with pytest.raises(TypeError, match=r"DATASET entry 'plugins_api_no_len'.*__len__ must return .* int"):
        build_dataset(toy_cfg(tmp_path), "plugins_api_no_len", "train", "pretrain")


def test_backbone_missing_attributes_is_caught_at_build_time(toy_plugin, tmp_path):
    class Bare(nn.Module):
        grid_size, num_patches, embed_dim = (8,), 8, 32

    if "plugins_api_bare" not in BACKBONE:
        BACKBONE.register(lambda cfg, node: Bare(), name="plugins_api_bare")
    from bridle.modeling import build_encoder

    cfg = toy_cfg(tmp_path, **{"MODEL.TOKENIZER.NAME": "plugins_api_bare"})
    with pytest.raises(TypeError) as e:
        build_encoder(cfg, cfg.MODEL.TOKENIZER)
    msg = str(e.value)
    assert "BACKBONE entry 'plugins_api_bare' (MODEL.TOKENIZER.NAME" in msg
    assert "'depth'" in msg and "layer_id" in msg


def test_mask_generator_with_uneven_rows_is_caught(toy_plugin, tmp_path):
    class Uneven:
        num_masked = 2

        def __call__(self, batch_size, device=None, generator=None):
            m = torch.zeros(batch_size, 8, dtype=torch.bool)
            m[0, :3] = True
            m[1:, :2] = True
            return m

    if "plugins_api_uneven" not in MASK_GENERATOR:
        MASK_GENERATOR.register(lambda cfg, grid: Uneven(), name="plugins_api_uneven")
    from bridle.modeling import build_mask_generator

    with pytest.raises(ValueError, match=r"MASK_GENERATOR entry 'plugins_api_uneven'.*exactly .num_masked = 2"):
        build_mask_generator(toy_cfg(tmp_path, **{"MODEL.MASK.NAME": "plugins_api_uneven"}), (8,))


def test_quantizer_contract_is_checked_and_codebook_methods_are_optional(toy_plugin, tmp_path):
    class NoSizes(nn.Module):
        @classmethod
        def from_config(cls, qcfg):
            return cls()

    if "plugins_api_nosizes" not in QUANTIZER:
        QUANTIZER.register(NoSizes, name="plugins_api_nosizes")
    from bridle.modeling.quantizers import build_quantizer

    with pytest.raises(
        TypeError, match=r"QUANTIZER entry 'plugins_api_nosizes'.*\['num_levels', 'codebook_size', 'code_dim'\]"
    ):
        build_quantizer(toy_cfg(tmp_path, **{"MODEL.QUANTIZER.NAME": "plugins_api_nosizes"}))


def test_meta_arch_and_head_are_looked_up_from_the_config(toy_plugin, tmp_path):
    from bridle.modeling import EncoderClassifier
    from bridle.trainers.pretrain import EncoderPhaseTrainer

    class NotBridle(nn.Module):
        def __init__(self, cfg, phase):
            super().__init__()

    if "plugins_api_not_bridle" not in META_ARCH:
        META_ARCH.register(NotBridle, name="plugins_api_not_bridle")
    with pytest.raises(TypeError, match=r"META_ARCH entry 'plugins_api_not_bridle' \(MODEL.META_ARCHITECTURE"):
        EncoderPhaseTrainer.build_model(
            toy_cfg(
                tmp_path, **{"MODEL.META_ARCHITECTURE": "plugins_api_not_bridle", "MODEL.TOKENIZER.COLD_START": True}
            )
        )
    if "plugins_api_bilinear" not in HEAD:
        HEAD.register(lambda cfg, d, k: nn.Bilinear(d, d, k), name="plugins_api_bilinear")
    model = EncoderClassifier(
        toy_cfg(tmp_path, **{"MODEL.HEAD.NAME": "plugins_api_bilinear", "MODEL.HEAD.NUM_CLASSES": 4})
    )
    assert isinstance(model.head, nn.Bilinear)


def test_tokenizer_phase_refreshes_only_declared_codebook_state(toy_plugin, tmp_path, monkeypatch):
    """RQ declares all its tensors as codebook state (fresh); a codebook-free quantizer with a
    learned layer of its own (the third-party FSQ) keeps it from the previous phase."""
    from bridle.modeling.bridle_model import BridleModel
    from bridle.trainers.pretrain import TokenizerPhaseTrainer

    monkeypatch.syspath_prepend(os.path.join(REPO, "tests", "core", "third_party_pkg"))
    importlib.import_module("bridle_thirdparty")
    fsq = {
        "MODEL.QUANTIZER.NAME": "fsq",
        "MODEL.QUANTIZER.NUM_LEVELS": 1,
        "MODEL.QUANTIZER.CODE_DIM": 3,
        "MODEL.QUANTIZER.CODEBOOK_SIZE": 27,
    }
    for extra, sub in (({}, "rq"), (fsq, "fsq")):
        cfg = toy_cfg(tmp_path / sub, **extra)
        prev = BridleModel(cfg, "encoder").state_dict()  # an encoder phase with a trained tokenizer
        q_keys = [k for k in prev if k.startswith("tokenizer.quantizer.")]
        for k in q_keys:
            prev[k] = torch.full_like(prev[k], 2) if prev[k].is_floating_point() else prev[k]
        if "tokenizer.quantizer.initialized" in prev:
            prev["tokenizer.quantizer.initialized"] = torch.tensor(True)
        path = str(tmp_path / f"{sub}.pth")
        torch.save({"model": prev}, path)
        cfg.defrost()
        cfg.MODEL.WEIGHTS = path
        trainer = TokenizerPhaseTrainer(cfg)
        trainer.resume_or_load(resume=False)
        q = trainer.model_without_ddp.tokenizer.quantizer
        if sub == "rq":
            assert not q.is_initialized() and not torch.equal(q.codebook, torch.full_like(q.codebook, 2))
        else:
            assert torch.equal(q.scale.detach(), torch.full((3,), 2.0))
        vit = trainer.model_without_ddp.tokenizer.vit.state_dict()
        assert all(torch.equal(v, prev["tokenizer.vit." + k]) for k, v in vit.items())  # warm start


def test_linear_probe_says_it_does_not_apply_batch_transforms(toy_plugin, tmp_path, caplog):
    from bridle.trainers.finetune import FinetuneTrainer, LinearProbeTrainer

    assert FinetuneTrainer.use_batch_transforms and not LinearProbeTrainer.use_batch_transforms
    cfg = toy_cfg(
        tmp_path,
        **{"TRAINER.NAME": "linear_probe", "INPUT.BATCH_TRANSFORMS": "['some_mixup']", "MODEL.HEAD.NUM_CLASSES": 4},
    )
    with caplog.at_level("WARNING"):
        trainer = LinearProbeTrainer(cfg)
    assert trainer.batch_transforms == []
    assert any(
        "INPUT.BATCH_TRANSFORMS ['some_mixup'] are NOT applied by LinearProbeTrainer" in r.getMessage()
        for r in caplog.records
    )


def test_patch_embed_evaluator_and_transform_contracts_name_the_entry(toy_plugin, tmp_path):
    from bridle.data.build import build_batch_transforms
    from bridle.evaluation import build_evaluators
    from bridle.modeling import build_patch_embed
    from bridle.registry import EVALUATOR, PATCH_EMBED, TRANSFORM

    class Wrong(nn.Module):
        grid_size, num_patches = (4, 4), 15

    if "plugins_api_wrong_embed" not in PATCH_EMBED:
        PATCH_EMBED.register(lambda cfg, dim: Wrong(), name="plugins_api_wrong_embed")
        EVALUATOR.register(lambda cfg: object(), name="plugins_api_no_methods")
        TRANSFORM.register(lambda cfg, mode: None, name="plugins_api_none_transform")
    cfg = toy_cfg(tmp_path, **{"MODEL.PATCH_EMBED.NAME": "plugins_api_wrong_embed"})
    with pytest.raises(ValueError, match=r"PATCH_EMBED entry 'plugins_api_wrong_embed'.*num_patches 15 != .* 16"):
        build_patch_embed(cfg, 32)
    with pytest.raises(
        TypeError, match=r"EVALUATOR entry 'plugins_api_no_methods'.*\['reset', 'process', 'evaluate'\]"
    ):
        build_evaluators(cfg, ["plugins_api_no_methods"])
    cfg.defrost()
    cfg.INPUT.BATCH_TRANSFORMS = ["plugins_api_none_transform"]
    with pytest.raises(TypeError, match=r"TRANSFORM entry 'plugins_api_none_transform'.*callable"):
        build_batch_transforms(cfg, "finetune")
