"""Engine bookkeeping: retention counts checkpoints written before a
resume, schedules are logged as their current value, evaluation datasets are built once."""

import json
import os

from bridle.config import get_cfg
from toy_plugin import toy_opts


def _cfg(out, **extra):
    c = get_cfg()
    c.merge_from_list(toy_opts(out, **extra))
    return c


def test_max_to_keep_holds_across_a_resume(toy_plugin, tmp_path):
    from bridle.engine import HookBase
    from bridle.trainers.pretrain import EncoderPhaseTrainer

    class Crash(HookBase):
        def before_step(self):
            if self.trainer.iter == 6:
                raise RuntimeError("crash")

    extra = {
        "TRAINER.NAME": "encoder",
        "MODEL.TOKENIZER.COLD_START": True,
        "SOLVER.MAX_ITER": 12,
        "SOLVER.CHECKPOINT_PERIOD": 2,
        "SOLVER.MAX_TO_KEEP": 2,
    }
    out = str(tmp_path / "r")
    t = EncoderPhaseTrainer(_cfg(out, **extra))
    t.register_hooks([Crash()])
    t.resume_or_load(resume=False)
    try:
        t.train()
    except RuntimeError:
        pass
    assert sorted(f for f in os.listdir(out) if f.endswith(".pth")) == ["model_0000004.pth", "model_0000006.pth"]
    r = EncoderPhaseTrainer(_cfg(out, **extra))
    r.resume_or_load(resume=True)
    r.train()
    assert sorted(f for f in os.listdir(out) if f.endswith(".pth")) == [
        "model_0000008.pth",
        "model_0000010.pth",
        "model_final.pth",
    ]


def test_lr_is_logged_as_its_current_value(toy_plugin, tmp_path):
    from bridle.trainers.pretrain import EncoderPhaseTrainer

    cfg = _cfg(
        str(tmp_path / "lr"),
        **{
            "TRAINER.NAME": "encoder",
            "MODEL.TOKENIZER.COLD_START": True,
            "SOLVER.MAX_ITER": 8,
            "SOLVER.WARMUP_ITERS": 8,
            "LOG_PERIOD": 4,
            "SOLVER.ALLOW_LONG_WARMUP": True,
        },
    )
    t = EncoderPhaseTrainer(cfg)
    t.resume_or_load(resume=False)
    t.train()
    lines = [json.loads(x) for x in open(os.path.join(cfg.OUTPUT_DIR, "metrics.json"))]
    by_it = {x["iteration"]: x["lr"] for x in lines}
    # the row of iteration N (N done) logs the lr of its step, index N - 1
    assert abs(by_it[4] - t.lr_schedule(3)) < 1e-12 and abs(by_it[8] - t.lr_schedule(7)) < 1e-12


def test_eval_datasets_built_once(toy_plugin, tmp_path, monkeypatch):
    import bridle.trainers.finetune as ft

    calls = []
    real = ft.build_dataset
    monkeypatch.setattr(
        ft, "build_dataset", lambda cfg, name, split, mode: calls.append(split) or real(cfg, name, split, mode)
    )
    cfg = _cfg(
        str(tmp_path / "ft"),
        **{
            "TRAINER.NAME": "finetune",
            "MODEL.HEAD.NUM_CLASSES": 4,
            "DATASETS.TEST": "toy_signals",
            "DATASETS.VAL": "toy_signals",
            "SOLVER.MAX_ITER": 6,
            "TEST.EVAL_PERIOD": 2,
        },
    )
    t = ft.FinetuneTrainer(cfg)
    t.resume_or_load(resume=False)
    t.train()
    assert len(t.eval_history) == 3 and sorted(calls) == ["test", "val"]
