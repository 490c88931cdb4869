"""Single BRIDLE pretraining phases as TRAINER entries: "encoder", "tokenizer", "joint".

Hand-over rules when a phase starts from MODEL.WEIGHTS (a previous phase's checkpoint or an
exported encoder) instead of resuming:
- encoder:   E <- checkpoint. With a trained tokenizer (not cold start) T <- checkpoint too;
             D always starts fresh (its targets are the new tokenizer's codes).
- tokenizer: E <- checkpoint (the frozen teacher). T and TE <- checkpoint when it holds a
             trained (non cold-start) tokenizer and PRETRAIN.TOKENIZER_WARM_START, else fresh.
             Codebooks are always fresh (re-initialised on the first batch).
- joint:     every module whose weights the checkpoint has.
"""
import logging
from typing import Dict, List

import torch

from bridle.checkpoint import extract_encoder_state, load_checkpoint_file, model_state_of
from bridle.data.build import skip_none_collate
from bridle.data.samplers import TrainingSampler
from bridle.engine import DefaultTrainer, HookBase
from bridle.modeling.bridle_model import BridleModel
from bridle.registry import TRAINER
from bridle.utils import comm

logger = logging.getLogger("bridle.pretrain")

def checkpoint_state(path: str) -> Dict[str, torch.Tensor]:
    """The model state of a BRIDLE checkpoint; an exported (encoder-only) one gets its keys
    prefixed with ``encoder.`` so the hand-over rules read both alike."""
    state = model_state_of(load_checkpoint_file(path))
    if not any(k.startswith("encoder.") for k in state):
        state = {"encoder." + k: v for k, v in extract_encoder_state(state).items()}
    return state


def has_trained_tokenizer(state: Dict[str, torch.Tensor]) -> bool:
    return any(k.startswith("tokenizer.vit.") for k in state)


class _InitCodebooks(HookBase):
    """Before the first step: initialise a frozen tokenizer's codebooks (k-means) on one batch
    drawn from a separate sampler, so the training data order is the same with or without it."""

    def before_train(self) -> None:
        t = self.trainer
        model: BridleModel = t.model_without_ddp
        q = model.tokenizer.quantizer
        if q.is_initialized() or model.phase == "tokenizer":
            return  # a training quantizer initialises itself on its first batch
        ds = t.train_dataset
        n = int(t.cfg.SOLVER.BATCH_SIZE_PER_GPU)
        it = iter(TrainingSampler(len(ds), seed=max(t.cfg.SEED, 0) + 7919))
        batch = skip_none_collate([ds[next(it)] for _ in range(n)])
        x = batch["input"].to(t.device)
        logger.info("Initialising the frozen tokenizer's codebooks on one batch (%s)", t.cfg.MODEL.QUANTIZER.INIT)
        with t.autocast():
            model.init_tokenizer_codebooks(x)


class _GlobalStep(HookBase):
    def before_step(self) -> None:
        self.trainer.model_without_ddp.global_step = self.trainer.iter


class PretrainTrainer(DefaultTrainer):
    phase = "encoder"
    mode = "pretrain"

    @classmethod
    def build_model(cls, cfg) -> BridleModel:
        model = BridleModel(cfg, cls.phase)
        counts = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in model.parameter_counts().items())
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logger.info(f"BRIDLE {cls.phase} phase parameters: {counts}; trained {trained / 1e6:.2f}M")
        return model

    def extra_hooks(self) -> list:
        return [_InitCodebooks(), _GlobalStep()]

    def _prefixes_to_load(self, state) -> List[str]:
        model: BridleModel = self.model_without_ddp
        if self.phase == "encoder":
            if model.tokenizer.cold_start:
                return ["encoder."]
            if not has_trained_tokenizer(state):
                raise ValueError(
                    f"The encoder phase needs a trained tokenizer, but MODEL.WEIGHTS "
                    f"'{self.cfg.MODEL.WEIGHTS}' has none (cold-start or encoder-only checkpoint). "
                    "Run a 'tokenizer' phase first, or use 'encoder_cold'."
                )
            return ["encoder.", "tokenizer."]
        if self.phase == "tokenizer":
            if has_trained_tokenizer(state) and self.cfg.PRETRAIN.TOKENIZER_WARM_START:
                return ["encoder.", "tokenizer.", "estimator."]
            return ["encoder."]
        return ["encoder.", "decoder.", "tokenizer.", "estimator."]

    def load_initial_weights(self, path: str) -> None:
        state = checkpoint_state(path)
        prefixes = self._prefixes_to_load(state)
        fresh_codebooks = self.phase == "tokenizer"
        model = self.model_without_ddp
        own = model.state_dict()
        take = {
            k: v for k, v in state.items()
            if k.startswith(tuple(prefixes)) and not (fresh_codebooks and k.startswith("tokenizer.quantizer."))
        }
        wanted = [
            k for k in own
            if k.startswith(tuple(prefixes)) and not (fresh_codebooks and k.startswith("tokenizer.quantizer."))
        ]
        missing = [k for k in wanted if k not in take]
        bad_shape = [k for k in wanted if k in take and take[k].shape != own[k].shape]
        if missing or bad_shape:
            raise ValueError(
                f"MODEL.WEIGHTS '{path}' does not fit the {self.phase} phase model: "
                f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(bad_shape)} with other shapes "
                f"(e.g. {[(k, tuple(take[k].shape), tuple(own[k].shape)) for k in bad_shape[:3]]}). "
                "Check that MODEL.ENCODER/TOKENIZER/QUANTIZER/PATCH_EMBED match the checkpoint's config."
            )
        model.load_state_dict({k: take[k] for k in wanted}, strict=False)
        logger.info(
            f"{self.phase} phase: loaded {len(wanted)} tensors ({', '.join(prefixes)}) from {path}; "
            f"fresh: {', '.join(sorted({k.split('.')[0] for k in own if k not in take or k not in wanted}))}"
        )


@TRAINER.register(name="encoder")
class EncoderPhaseTrainer(PretrainTrainer):
    phase = "encoder"


@TRAINER.register(name="tokenizer")
class TokenizerPhaseTrainer(PretrainTrainer):
    phase = "tokenizer"


@TRAINER.register(name="joint")
class JointTrainer(PretrainTrainer):
    phase = "joint"
