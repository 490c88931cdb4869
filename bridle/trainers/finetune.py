"""Downstream trainers: TRAINER "finetune" and "linear_probe", the two evaluations of arXiv 2502.02118.

Both train an :class:`~bridle.modeling.classifier.EncoderClassifier` initialised from
MODEL.WEIGHTS (an exported encoder, a full pretraining checkpoint or a classifier checkpoint;
only the encoder is taken, every encoder weight must be present, the positional table is
resized when the patch grid differs).

* "finetune": everything trains, layer-wise lr decay SOLVER.LAYER_DECAY (embeddings get
  ``decay ** (depth + 1)``, block i ``decay ** (depth - i)``, final norm / fc_norm / head 1),
  batch transforms (INPUT.BATCH_TRANSFORMS, e.g. mixup) on, dataset mode "finetune".
* "linear_probe": only fc_norm, the optional BatchNorm and the head train; the encoder is
  frozen and stays in eval mode (no dropout / drop-path) even while the trainer trains;
  no batch transforms, dataset mode "linear_probe".

Evaluation (every TEST.EVAL_PERIOD iterations and at the end) runs the TEST.EVALUATORS on
DATASETS.TEST and, when set, DATASETS.VAL: ``{"test": {...}, "val": {...}}``. Every evaluation
is recorded. At the end OUTPUT_DIR/final_results.json reports the *last* evaluation's metrics
and, when DATASETS.VAL is set, the test metrics of the evaluation with the best val score
(the primary metric of the first evaluator: top1 / mAP / auc). Nothing is ever selected on
the test split.
"""

import json
import logging
import os
from typing import Dict, List, Optional

import torch
import torch.nn as nn

import bridle.evaluation  # noqa: F401  (registers the EVALUATOR entries)
from bridle.checkpoint import load_checkpoint_file, load_encoder_weights, model_state_of
from bridle.checkpoint.io import CheckpointError, atomic_save
from bridle.config.config import ConfigValueError
from bridle.data.build import build_dataset, build_test_loader
from bridle.engine import hooks
from bridle.engine.defaults import DefaultTrainer
from bridle.evaluation import build_evaluators, inference_on_dataset
from bridle.modeling.classifier import EncoderClassifier  # noqa: F401  (registers META_ARCH entry)
from bridle.protocols import ClassCount, supports
from bridle.registry import META_ARCH, TRAINER
from bridle.solver import build_optimizer
from bridle.solver.build import param_groups
from bridle.utils import comm

logger = logging.getLogger("bridle.finetune")

FINAL_RESULTS = "final_results.json"
# SOLVER.PRECISION -> autocast dtype of inference (None: fp32).
_AMP = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _fmt(metrics: Dict[str, float]) -> str:
    return ", ".join(f"{k}: {v:.4f}" for k, v in metrics.items())


def primary_metric(cfg) -> str:
    """Name of the metric used for model selection on val: the first evaluator's primary."""
    from bridle.registry import EVALUATOR

    for name in cfg.TEST.EVALUATORS:
        ev = EVALUATOR.get(name)(cfg)
        if getattr(ev, "primary_metric", ""):
            return ev.primary_metric
    raise ConfigValueError(f"None of TEST.EVALUATORS {list(cfg.TEST.EVALUATORS)} declares a primary metric.")


def check_num_classes(cfg, dataset, what: str) -> None:
    """MODEL.HEAD.NUM_CLASSES must equal the dataset's ``num_classes`` when it declares one."""
    n = dataset.num_classes if supports(dataset, ClassCount) else None
    if isinstance(n, int) and n > 0 and n != int(cfg.MODEL.HEAD.NUM_CLASSES):
        raise ConfigValueError(
            f"MODEL.HEAD.NUM_CLASSES = {cfg.MODEL.HEAD.NUM_CLASSES} but {what} has num_classes = {n}: "
            f"expected MODEL.HEAD.NUM_CLASSES {n}."
        )


@TRAINER.register(name="finetune")
class FinetuneTrainer(DefaultTrainer):
    mode = "finetune"
    use_batch_transforms = True

    def __init__(self, cfg) -> None:
        self.eval_history: List[dict] = []
        self.init_report = None
        self._eval_datasets = None
        super().__init__(cfg)
        check_num_classes(cfg, self.train_dataset, f"DATASETS.TRAIN '{cfg.DATASETS.TRAIN}'")

    def eval_datasets(self) -> Dict[str, object]:
        """The evaluation datasets, built once per run (not at every evaluation)."""
        if self._eval_datasets is None:
            self._eval_datasets = {}
            for split, name in (("test", self.cfg.DATASETS.TEST), ("val", self.cfg.DATASETS.VAL)):
                if name:
                    ds = build_dataset(self.cfg, name, split, "eval")
                    check_num_classes(self.cfg, ds, f"DATASETS.{split.upper()} '{name}'")
                    self._eval_datasets[split] = ds
        return self._eval_datasets

    # -- model / optimizer
    @classmethod
    def build_model(cls, cfg) -> nn.Module:
        name = getattr(cfg.MODEL, "DOWNSTREAM_ARCHITECTURE", "EncoderClassifier")
        model = META_ARCH.get(name)(cfg)
        lacks = [a for a in ("encoder", "num_layers", "layer_id", "freeze_encoder") if not hasattr(model, a)]
        if lacks:
            raise TypeError(
                f"META_ARCH entry '{name}' (MODEL.DOWNSTREAM_ARCHITECTURE, registered by "
                f"{META_ARCH.origin(name)}) lacks {lacks}; downstream trainers need .encoder, .num_layers, "
                ".layer_id(param_name) and .freeze_encoder() (subclass bridle.modeling.EncoderClassifier)."
            )
        logger.info(
            f"{name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
            f"{getattr(model, 'num_classes', '?')} classes, loss {getattr(model, 'loss_type', '?')}"
        )
        return model

    @classmethod
    def build_optimizer(cls, cfg, model: nn.Module) -> torch.optim.Optimizer:
        decay = float(cfg.SOLVER.LAYER_DECAY)
        groups = param_groups(
            model,
            cfg.SOLVER.WEIGHT_DECAY,
            layer_id_fn=model.layer_id,
            num_layers=model.num_layers,
            layer_decay=decay,
        )
        scales = sorted({(g["layer_id"], g["lr_scale"]) for g in groups})
        logger.info(f"Layer-wise lr decay {decay}: (layer id, lr scale) {[(i, round(s, 6)) for i, s in scales]}")
        return build_optimizer(cfg, model, groups)

    def load_initial_weights(self, path: str) -> None:
        """Encoder weights from an exported encoder or a full checkpoint (strict on the encoder;
        pos_embed resized to this model's patch grid when needed)."""
        self.init_report = load_encoder_weights(self.model_without_ddp, path, strict_encoder=True)

    # -- evaluation
    def has_evaluation(self) -> bool:
        return bool(self.cfg.DATASETS.TEST or self.cfg.DATASETS.VAL)

    @classmethod
    def test(cls, cfg, model: nn.Module, datasets: Optional[Dict[str, object]] = None) -> Dict[str, Dict[str, float]]:
        """TEST.EVALUATORS on DATASETS.TEST ("test") and DATASETS.VAL ("val"), each set one
        (``datasets``: already built ones by split)."""
        if not (cfg.DATASETS.TEST or cfg.DATASETS.VAL):
            raise ConfigValueError("Nothing to evaluate: set DATASETS.TEST and/or DATASETS.VAL.")
        p = next(model.parameters())
        device = p.device
        amp = _AMP.get(cfg.SOLVER.PRECISION)
        results: Dict[str, Dict[str, float]] = {}
        for split, name in (("test", cfg.DATASETS.TEST), ("val", cfg.DATASETS.VAL)):
            if not name:
                continue
            dataset = datasets[split] if datasets and split in datasets else build_dataset(cfg, name, split, "eval")
            loader = build_test_loader(cfg, dataset)
            results[split] = inference_on_dataset(model, loader, build_evaluators(cfg), device, amp)
            logger.info(f"Evaluation on {name} ({split}, {len(dataset)} items): {_fmt(results[split])}")
        return results

    def build_hooks(self) -> list:
        hs = super().build_hooks()
        if self.eval_hook is not None:
            self.eval_hook.eval_fn = self._evaluate_and_record
            # Evaluate before checkpointing, so a checkpoint of iteration i already holds the
            # evaluation record of iteration i (a resumed run keeps its full history).
            hs.remove(self.eval_hook)
            ckpt = next(i for i, h in enumerate(hs) if isinstance(h, hooks.PeriodicCheckpointer))
            hs.insert(ckpt, self.eval_hook)
        return hs

    def _evaluate_and_record(self) -> Dict[str, Dict[str, float]]:
        results = self.test(self.cfg, self.model_without_ddp, self.eval_datasets())
        done = min(self.iter + 1, self.max_iter)
        record = {"iteration": done, "epoch": round(done / self.iters_per_epoch, 4)}
        record.update({k: dict(v) for k, v in results.items()})
        metric = primary_metric(self.cfg)
        earlier = [r["val"][metric] for r in self.eval_history if metric in r.get("val", {})]
        self.eval_history.append(record)
        val = results.get("val", {}).get(metric)
        if val is not None and (not earlier or val > max(earlier)) and comm.is_main_process():
            # The weights chosen on val (never on test), beside the periodic checkpoints; saved
            # without touching last_checkpoint so --resume still continues from the latest.
            path = os.path.join(self.cfg.OUTPUT_DIR, "model_best_val.pth")
            atomic_save(
                {
                    "model": self.model_without_ddp.state_dict(),
                    "cfg": self.cfg.dump(),
                    "iteration": done,
                    "val": results["val"],
                },
                path,
            )
            logger.info(f"New best val {metric} {val:.4f} at iteration {done}: saved {path}")
        return results

    @staticmethod
    def summarize(history: List[dict], metric: str) -> dict:
        """The report of a run from its evaluation records: the last evaluation, and the one
        with the best val ``metric`` (earliest on ties) when val results exist."""
        if not history:
            return {}
        out = {"primary_metric": metric, "last": history[-1], "val_selected": None, "history": history}
        with_val = [r for r in history if metric in r.get("val", {})]
        if with_val:
            best = max(with_val, key=lambda r: r["val"][metric])  # max() keeps the first maximum
            out["val_selected"] = best
        return out

    def final_results(self) -> dict:
        return self.summarize(self.eval_history, primary_metric(self.cfg))

    def train(self) -> dict:
        ran = self.start_iter < self.max_iter
        super().train()
        if not ran or not self.eval_history:
            return {}
        final = self.final_results()
        last, sel = final["last"], final["val_selected"]
        msg = f"Final results (last evaluation, iteration {last['iteration']}): test {_fmt(last.get('test', {}))}"
        if sel is not None:
            msg += (
                f"; selected on val {final['primary_metric']} (iteration {sel['iteration']}, val "
                f"{sel['val'][final['primary_metric']]:.4f}): test {_fmt(sel.get('test', {}))}"
            )
        logger.info(msg)
        if comm.is_main_process():
            path = os.path.join(self.cfg.OUTPUT_DIR, FINAL_RESULTS)
            with open(path, "w") as f:
                json.dump(final, f, indent=2)
            logger.info(f"Wrote {path}")
        return final

    # -- resume: evaluation records travel in the checkpoint
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["eval_history"] = list(self.eval_history)
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.eval_history = list(state.get("eval_history", []))

    # -- evaluation of a fine-tuned checkpoint
    @classmethod
    def load_eval_weights(cls, cfg, model: nn.Module) -> None:
        """Load a fine-tuned classifier checkpoint (every key of the model must be present)."""
        path = cfg.MODEL.WEIGHTS
        state = model_state_of(load_checkpoint_file(path))
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        mismatched = [
            f"{k} {list(state[k].shape)} vs {list(v.shape)}"
            for k, v in own.items()
            if k in state and state[k].shape != v.shape
        ]
        if missing or mismatched:
            raise CheckpointError(
                f"MODEL.WEIGHTS '{path}' is not a checkpoint of this classifier: missing keys "
                f"{missing[:8]}{' ...' if len(missing) > 8 else ''}; shape mismatches {mismatched[:4]}. "
                "Evaluation needs a fine-tuned checkpoint (e.g. OUTPUT_DIR/model_final.pth of a "
                "finetune / linear_probe run) and the same MODEL.* config."
            )
        unexpected = [k for k in state if k not in own]
        if unexpected:
            logger.warning(f"Ignoring keys of {path} that the model does not have: {unexpected[:10]}")
        model.load_state_dict({k: state[k] for k in own}, strict=True)
        logger.info(f"Loaded the fine-tuned classifier from {path}")

    @classmethod
    def eval_only(cls, cfg) -> Dict[str, Dict[str, float]]:
        results = super().eval_only(cfg)
        if comm.is_main_process() and cfg.OUTPUT_DIR:
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
            with open(os.path.join(cfg.OUTPUT_DIR, "eval_results.json"), "w") as f:
                json.dump({"weights": cfg.MODEL.WEIGHTS, **results}, f, indent=2)
        return results


@TRAINER.register(name="linear_probe")
class LinearProbeTrainer(FinetuneTrainer):
    mode = "linear_probe"
    use_batch_transforms = False

    @classmethod
    def build_model(cls, cfg) -> nn.Module:
        model = super().build_model(cfg)
        model.freeze_encoder()
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        logger.info(f"Linear probe: training {trainable}; the encoder is frozen and kept in eval mode")
        return model

    @classmethod
    def build_optimizer(cls, cfg, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model, param_groups(model, cfg.SOLVER.WEIGHT_DECAY))
