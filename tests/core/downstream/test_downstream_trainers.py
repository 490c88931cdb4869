"""TRAINER "finetune" / "linear_probe": weight loading, layer decay, frozen encoder, honest
model selection, eval-only reproduction."""

import json
import os

import pytest
import torch

from bridle.checkpoint import export_encoder
from bridle.registry import TRAINER
from bridle.trainers.finetune import FinetuneTrainer, LinearProbeTrainer
from downstream_toy import TRANSFORM_CALLS
from test_downstream_checkpoint import make_pretrain_checkpoint


@pytest.fixture
def exported(make_cfg, tmp_path):
    cfg = make_cfg(sub="pretrain")
    src = tmp_path / "pretrain.pth"
    enc = make_pretrain_checkpoint(cfg, src)
    dst = tmp_path / "encoder.pth"
    export_encoder(src, dst)
    return dst, enc, src


def test_registered():
    assert TRAINER.get("finetune") is FinetuneTrainer
    assert TRAINER.get("linear_probe") is LinearProbeTrainer
    assert (FinetuneTrainer.mode, FinetuneTrainer.use_batch_transforms) == ("finetune", True)
    assert (LinearProbeTrainer.mode, LinearProbeTrainer.use_batch_transforms) == ("linear_probe", False)


def test_layer_decay_sets_expected_lr_per_block(make_cfg):
    cfg = make_cfg(
        "SOLVER.LAYER_DECAY",
        0.75,
        "SOLVER.MAX_ITER",
        1,
        "SOLVER.WARMUP_ITERS",
        0,
        "SOLVER.BASE_LR",
        1e-3,
        "DATASETS.TEST",
        "",
    )
    trainer = FinetuneTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()  # the LRScheduler hook set every group's lr before the step
    lr_of = {}
    for g in trainer.optimizer.param_groups:
        for p in g["params"]:
            lr_of[id(p)] = g["lr"]
    expected_layer = {
        "encoder.patch_embed.": 0,
        "encoder.cls_token": 0,
        "encoder.blocks.0.": 1,
        "encoder.blocks.1.": 2,
        "fc_norm.": 3,
        "head.": 3,
    }  # encoder.norm: unused, frozen
    seen = set()
    for name, p in trainer.model_without_ddp.named_parameters():
        if not p.requires_grad:
            continue
        prefix = next(k for k in expected_layer if name.startswith(k))
        seen.add(prefix)
        assert lr_of[id(p)] == pytest.approx(1e-3 * 0.75 ** (3 - expected_layer[prefix])), name
    assert seen == set(expected_layer)
    decays = {g["weight_decay"] for g in trainer.optimizer.param_groups}
    assert decays == {0.0, 0.05}


def test_finetune_loads_every_encoder_key_and_refuses_bad_weights(make_cfg, exported, tmp_path):
    dst, enc, src = exported
    cfg = make_cfg(
        "MODEL.WEIGHTS", str(dst), "SOLVER.MAX_ITER", 2, "SOLVER.WARMUP_ITERS", 1, "DATASETS.TEST", "", sub="ft"
    )
    trainer = FinetuneTrainer(cfg)
    trainer.resume_or_load(resume=False)
    model = trainer.model_without_ddp
    assert trainer.init_report.loaded == sorted(model.encoder.state_dict())
    assert not trainer.init_report.missing and not trainer.init_report.unexpected
    for k, v in enc.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[k], v), k
    # a checkpoint of another width: nothing matches -> refused
    wide_src = tmp_path / "wide.pth"
    make_pretrain_checkpoint(make_cfg("MODEL.ENCODER.EMBED_DIM", 96, sub="wide"), wide_src)
    bad = FinetuneTrainer(make_cfg("MODEL.WEIGHTS", str(wide_src), "DATASETS.TEST", "", sub="bad"))
    with pytest.raises(RuntimeError, match="No encoder weight"):
        bad.resume_or_load(resume=False)
    # a checkpoint without any encoder key -> refused
    empty = tmp_path / "empty.pth"
    torch.save({"model": {"decoder.head.weight": torch.zeros(2, 2)}, "cfg": ""}, empty)
    bad2 = FinetuneTrainer(make_cfg("MODEL.WEIGHTS", str(empty), "DATASETS.TEST", "", sub="bad2"))
    with pytest.raises(KeyError, match="encoder"):
        bad2.resume_or_load(resume=False)


def test_linear_probe_changes_only_head_and_fc_norm(make_cfg, exported):
    dst, _, _ = exported
    cfg = make_cfg(
        "TRAINER.NAME",
        "linear_probe",
        "MODEL.WEIGHTS",
        str(dst),
        "MODEL.HEAD.BATCHNORM",
        True,
        "MODEL.ENCODER.DROP_PATH",
        0.2,
        "SOLVER.MAX_ITER",
        8,
        "SOLVER.BASE_LR",
        1e-2,
        "INPUT.BATCH_TRANSFORMS",
        ["toy_count"],
        "DATASETS.TEST",
        "",
        sub="lp",
    )
    trainer = LinearProbeTrainer(cfg)
    trainer.resume_or_load(resume=False)
    model = trainer.model_without_ddp
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    modes = []
    model.encoder.register_forward_pre_hook(lambda m, a: modes.append(any(x.training for x in m.modules())))
    calls = TRANSFORM_CALLS["n"]
    trainer.train()
    assert modes and not any(modes)  # the frozen encoder never ran in train mode
    assert TRANSFORM_CALLS["n"] == calls  # linear probing applies no batch transforms
    after = model.state_dict()
    trained = ("head.", "fc_norm.", "bn.")
    for k, v in before.items():
        if k.startswith(trained):
            continue
        assert torch.equal(after[k], v), f"{k} changed during linear probing"
    assert not torch.equal(after["head.weight"], before["head.weight"])
    assert not torch.equal(after["fc_norm.weight"], before["fc_norm.weight"])
    assert not torch.equal(after["bn.running_mean"], before["bn.running_mean"])


def test_eval_only_reproduces_final_results_and_selection_is_on_val(make_cfg, exported):
    dst, _, _ = exported
    cfg = make_cfg(
        "MODEL.WEIGHTS",
        str(dst),
        "DATASETS.VAL",
        "toy_clusters",
        "TEST.EVAL_PERIOD",
        10,
        "SOLVER.MAX_ITER",
        20,
        "TEST.EVALUATORS",
        ["accuracy", "map", "auc"],
        "MODEL.ENCODER.DROP_PATH",
        0.1,
        "SOLVER.LAYER_DECAY",
        0.75,
        "INPUT.BATCH_TRANSFORMS",
        ["toy_count"],
        sub="ft_eval",
    )
    calls = TRANSFORM_CALLS["n"]
    trainer = FinetuneTrainer(cfg)
    trainer.resume_or_load(resume=False)
    final = trainer.train()
    assert TRANSFORM_CALLS["n"] - calls == 20  # fine-tuning applies the batch transforms
    with open(os.path.join(cfg.OUTPUT_DIR, "final_results.json")) as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(final))
    assert saved["primary_metric"] == "top1"
    assert [r["iteration"] for r in saved["history"]] == [10, 20]
    last = saved["last"]
    assert last["iteration"] == 20 and set(last["test"]) == {"top1", "mAP", "auc"}
    assert last["test"]["top1"] > 0.25 + 0.2  # 4 classes: well above chance
    best_val = max(r["val"]["top1"] for r in saved["history"])
    sel = saved["val_selected"]
    assert sel["val"]["top1"] == best_val
    assert sel["iteration"] == min(r["iteration"] for r in saved["history"] if r["val"]["top1"] == best_val)
    # the evaluation at the end of training is in metrics.json
    with open(os.path.join(cfg.OUTPUT_DIR, "metrics.json")) as f:
        logged = [json.loads(line) for line in f]
    assert any(r.get("test/top1") == last["test"]["top1"] for r in logged)

    eval_cfg = cfg.clone()
    eval_cfg.MODEL.WEIGHTS = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    eval_cfg.OUTPUT_DIR = cfg.OUTPUT_DIR + "_eval"
    results = FinetuneTrainer.eval_only(eval_cfg)
    assert results["test"] == last["test"]  # bitwise the same numbers
    assert results["val"] == last["val"]
    # the weights chosen on val are kept and reproduce the selected evaluation
    best_cfg = eval_cfg.clone()
    best_cfg.MODEL.WEIGHTS = os.path.join(cfg.OUTPUT_DIR, "model_best_val.pth")
    best = FinetuneTrainer.eval_only(best_cfg)
    assert best["val"] == sel["val"] and best["test"] == sel["test"]
    assert os.path.isfile(os.path.join(eval_cfg.OUTPUT_DIR, "eval_results.json"))
    # an encoder-only file is not a fine-tuned checkpoint
    bad = cfg.clone()
    bad.MODEL.WEIGHTS = str(dst)
    with pytest.raises(RuntimeError, match="not a checkpoint of this classifier"):
        FinetuneTrainer.eval_only(bad)


def test_summary_never_selects_on_test():
    history = [
        {"iteration": 10, "val": {"top1": 0.5}, "test": {"top1": 0.9}},
        {"iteration": 20, "val": {"top1": 0.8}, "test": {"top1": 0.6}},
        {"iteration": 30, "val": {"top1": 0.8}, "test": {"top1": 0.7}},
        {"iteration": 40, "val": {"top1": 0.7}, "test": {"top1": 0.65}},
    ]
    out = FinetuneTrainer.summarize(history, "top1")
    assert out["last"]["test"]["top1"] == 0.65
    assert out["val_selected"]["iteration"] == 20 and out["val_selected"]["test"]["top1"] == 0.6
    no_val = FinetuneTrainer.summarize([{"iteration": 5, "test": {"top1": 0.4}}], "top1")
    assert no_val["val_selected"] is None and no_val["last"]["test"]["top1"] == 0.4


def test_resume_keeps_evaluation_history(make_cfg):
    cfg = make_cfg(
        "TEST.EVAL_PERIOD",
        4,
        "SOLVER.MAX_ITER",
        8,
        "SOLVER.CHECKPOINT_PERIOD",
        4,
        "SOLVER.MAX_TO_KEEP",
        0,
        sub="resume",
    )
    first = FinetuneTrainer(cfg)
    first.resume_or_load(resume=False)
    full = first.train()
    assert [r["iteration"] for r in full["history"]] == [4, 8]
    # resume from the iteration-4 checkpoint: the evaluation at 4 comes back from the checkpoint
    os.remove(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    with open(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"), "w") as f:
        f.write("model_0000003.pth")
    second = FinetuneTrainer(cfg)
    second.resume_or_load(resume=True)
    assert second.start_iter == 4 and [r["iteration"] for r in second.eval_history] == [4]
    resumed = second.train()
    assert [r["iteration"] for r in resumed["history"]] == [4, 8]
    assert resumed["last"]["test"] == full["last"]["test"]
