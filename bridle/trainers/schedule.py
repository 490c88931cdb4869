"""TRAINER "schedule": the whole interleaved BRIDLE run in one command.

``PRETRAIN.SCHEDULE`` lists phases (any length), e.g. ["encoder_cold", "tokenizer", "encoder"].
Phase k runs in ``OUTPUT_DIR/<k>_<phase>/`` with its own solver settings
(``PRETRAIN.PHASES.<PHASE>``) and starts from phase k-1's ``model_final.pth`` by the hand-over
rules of :mod:`bridle.trainers.pretrain`. With ``--resume``, finished phases are skipped and
the running one resumes from its last checkpoint.
"""
import gc
import logging
import os

import torch

from bridle.registry import TRAINER
from bridle.utils import comm

logger = logging.getLogger("bridle.schedule")

# schedule entry -> (TRAINER entry, cold-start tokenizer)
PHASE_TRAINERS = {
    "encoder_cold": ("encoder", True),
    "encoder": ("encoder", False),
    "tokenizer": ("tokenizer", False),
    "joint": ("joint", False),
}
_SOLVER_KEYS = {"EPOCHS": "EPOCHS", "MAX_ITER": "MAX_ITER", "WARMUP_EPOCHS": "WARMUP_EPOCHS",
                "BASE_LR": "BASE_LR", "WEIGHT_DECAY": "WEIGHT_DECAY"}


def phase_dir(cfg, k: int, name: str) -> str:
    return os.path.join(cfg.OUTPUT_DIR, f"{k}_{name}")


def phase_config(cfg, k: int, name: str, init_weights: str):
    """The config of phase ``k`` (``name``): the run's config with the phase's solver settings
    and OPTS applied, its own OUTPUT_DIR and the weights it starts from."""
    if name not in PHASE_TRAINERS:
        raise ValueError(
            f"PRETRAIN.SCHEDULE entry '{name}' is not a phase; expected one of {sorted(PHASE_TRAINERS)}."
        )
    trainer, cold = PHASE_TRAINERS[name]
    pcfg = cfg.clone()
    pcfg.defrost()
    node = cfg.PRETRAIN.PHASES[name.upper()]
    for key, solver_key in _SOLVER_KEYS.items():
        value = node[key]
        if value >= 0:
            pcfg.SOLVER[solver_key] = type(pcfg.SOLVER[solver_key])(value)
    if node.MAX_ITER < 0 and node.EPOCHS >= 0:
        pcfg.SOLVER.MAX_ITER = 0  # the phase gives epochs: they win over an inherited MAX_ITER
    if node.OPTS:
        pcfg.merge_from_list(list(node.OPTS))
    pcfg.TRAINER.NAME = trainer
    pcfg.MODEL.TOKENIZER.COLD_START = cold
    pcfg.MODEL.WEIGHTS = init_weights
    pcfg.OUTPUT_DIR = phase_dir(cfg, k, name)
    pcfg.freeze()
    return pcfg


@TRAINER.register(name="schedule")
class ScheduleRunner:
    """Runs PRETRAIN.SCHEDULE phase after phase (same API as a trainer)."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.schedule = list(cfg.PRETRAIN.SCHEDULE)
        if not self.schedule:
            raise ValueError("PRETRAIN.SCHEDULE is empty: nothing to run.")
        for name in self.schedule:  # validate all phases before spending compute
            phase_config(cfg, 0, name, "")
        self.resume = False

    def resume_or_load(self, resume: bool = True) -> None:
        self.resume = resume

    @classmethod
    def eval_only(cls, cfg):
        raise ValueError("TRAINER.NAME 'schedule' is pretraining; --eval-only applies to finetune/linear_probe.")

    def train(self) -> dict:
        weights = self.cfg.MODEL.WEIGHTS
        for k, name in enumerate(self.schedule):
            pcfg = phase_config(self.cfg, k, name, weights)
            final = os.path.join(pcfg.OUTPUT_DIR, "model_final.pth")
            if self.resume and os.path.isfile(final):
                logger.info(f"Phase {k} ({name}) already finished: {final}")
                weights = final
                continue
            logger.info(f"=== Phase {k + 1}/{len(self.schedule)}: {name} -> {pcfg.OUTPUT_DIR}")
            if comm.is_main_process():
                os.makedirs(pcfg.OUTPUT_DIR, exist_ok=True)
                with open(os.path.join(pcfg.OUTPUT_DIR, "config.yaml"), "w") as f:
                    f.write(pcfg.dump())
            trainer = TRAINER.get(pcfg.TRAINER.NAME)(pcfg)
            trainer.resume_or_load(resume=self.resume)
            trainer.train()
            del trainer
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            comm.synchronize()
            weights = final
        logger.info(f"Schedule finished; last checkpoint {weights}")
        return {"final_checkpoint": weights}
