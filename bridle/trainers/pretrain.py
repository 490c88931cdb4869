"""Single BRIDLE pretraining phases as TRAINER entries: "encoder", "tokenizer", "joint".

Hand-over rules when a phase starts from MODEL.WEIGHTS (a previous phase's checkpoint or an
exported encoder) instead of resuming. Every phase loads and keeps every network the
checkpoint has, frozen or unused ones included, so each phase's checkpoint carries what a
later phase starts from (as the authors, who load the whole previous checkpoint):
- encoder:   E <- checkpoint. With a trained tokenizer (not cold start) T <- checkpoint too,
             codebooks included. D <- checkpoint when it has one and PRETRAIN.CARRY_DECODER
             (the head, D's last Linear, starts fresh only when its shape changed, e.g. other
             codebook size / levels). TE <- checkpoint when it has one (frozen, unused here,
             kept for the next tokenizer phase).
- tokenizer: E <- checkpoint (the frozen teacher). T and TE <- checkpoint when it holds a
             trained (non cold-start) tokenizer and PRETRAIN.TOKENIZER_WARM_START, else fresh.
             Codebooks are always fresh (re-initialised on the first batch). D <- checkpoint
             when it has one (unused here, kept for the next encoder phase).
- joint:     E <- checkpoint; D, T and TE <- checkpoint when it has them in a fitting shape (after
             encoder_cold the cold-start tokenizer does not fit: T and TE start fresh).
"""

import logging
from typing import Dict, List, Tuple

import torch

from bridle.checkpoint import extract_encoder_state, load_checkpoint_file, model_state_of
from bridle.config.config import ConfigValueError
from bridle.data.batch import device_transform_of, prepare_batch
from bridle.data.items import skip_none_collate
from bridle.data.samplers import TrainingSampler
from bridle.engine import DefaultTrainer, HookBase
from bridle.engine.train_loop import BadDataError
from bridle.modeling.bridle_model import BridleModel
from bridle.protocols import (
    BookkeepingState,
    CodebookState,
    InitializableCodebook,
    ReportsFailedKeys,
    ReportsLastFailure,
    supports,
)
from bridle.registry import META_ARCH, TRAINER

logger = logging.getLogger("bridle.pretrain")


def checkpoint_state(path: str) -> Dict[str, torch.Tensor]:
    """The model state of a BRIDLE checkpoint; an exported (encoder-only) one gets its keys
    prefixed with ``encoder.`` so the hand-over rules read both alike."""
    ckpt = load_checkpoint_file(path)
    state = model_state_of(ckpt)
    if not any(k.startswith("encoder.") for k in state):  # exported: keep the backbone's own keys
        state = {"encoder." + k: v for k, v in extract_encoder_state(ckpt).items()}
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
        # A quantizer without a codebook to initialise need not define is_initialized/init_codebook.
        if not supports(q, InitializableCodebook) or q.is_initialized() or model.phase == "tokenizer":
            return  # a training quantizer initialises itself on its first batch
        ds = t.train_dataset
        n = int(t.cfg.SOLVER.BATCH_SIZE_PER_GPU)
        it = iter(TrainingSampler(len(ds), seed=max(t.cfg.SEED, 0) + 7919))
        items, tried = [], 0
        while len(items) < n and tried < max(4 * n, min(len(ds), 1000)):  # unreadable items: None
            item = ds[next(it)]
            tried += 1
            if item is not None:
                items.append(item)
        if not items:
            failed = list(dict.fromkeys(ds.failed_keys))[:10] if supports(ds, ReportsFailedKeys) else []
            last = ds.last_failure if supports(ds, ReportsLastFailure) else None
            raise BadDataError(
                f"Cannot initialise the tokenizer's codebooks: none of {tried} training items "
                f"({type(ds).__name__}) could be read"
                + (f"; first unreadable: {failed}" if failed else "")
                + (f"; last error: {last[1]}" if last else "")
                + "."
            )
        # the same path as a training batch: to the device, the dataset's device_transform
        x = prepare_batch(skip_none_collate(items), t.device, device_transform_of(ds))["input"]
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
        name = getattr(cfg.MODEL, "META_ARCHITECTURE", "Bridle")
        arch = META_ARCH.get(name)
        if not (isinstance(arch, type) and issubclass(arch, BridleModel)):
            raise TypeError(
                f"META_ARCH entry '{name}' (MODEL.META_ARCHITECTURE, registered by {META_ARCH.origin(name)}) "
                f"is {arch!r}; pretraining trainers need a subclass of bridle.modeling.bridle_model.BridleModel "
                "(built as cls(cfg, phase))."
            )
        model = arch(cfg, cls.phase)
        counts = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in model.parameter_counts().items())
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logger.info(f"BRIDLE {cls.phase} phase parameters: {counts}; trained {trained / 1e6:.2f}M")
        return model

    def extra_hooks(self) -> list:
        from bridle.evaluation.online_probe import build_online_probe

        # TEST.ONLINE_PROBE: None (not registered) when disabled or in a tokenizer phase
        return [_InitCodebooks(), _GlobalStep(), build_online_probe(self.cfg, self.phase)]

    def _handover_plan(self, state) -> Tuple[List[str], List[str]]:
        """(required, carried) key prefixes: required ones must be in the checkpoint and fit
        the model; carried ones are taken when the checkpoint has them (else they start fresh)."""
        model: BridleModel = self.model_without_ddp
        carry_decoder = ["decoder."] if self.cfg.PRETRAIN.CARRY_DECODER else []
        if self.phase == "encoder":
            if model.tokenizer.cold_start:
                return ["encoder."], carry_decoder + ["estimator."]
            if not has_trained_tokenizer(state):
                raise ConfigValueError(
                    f"The encoder phase needs a trained tokenizer, but MODEL.WEIGHTS "
                    f"'{self.cfg.MODEL.WEIGHTS}' has none (cold-start or encoder-only checkpoint). "
                    "Run a 'tokenizer' phase first, or use 'encoder_cold'."
                )
            return ["encoder.", "tokenizer."], carry_decoder + ["estimator."]
        if self.phase == "tokenizer":
            if has_trained_tokenizer(state) and self.cfg.PRETRAIN.TOKENIZER_WARM_START:
                return ["encoder.", "tokenizer.", "estimator."], ["decoder."]
            return ["encoder."], ["decoder."]
        # joint: E is required; D, T and TE are carried when the checkpoint has them in a fitting
        # shape (after encoder_cold the cold-start tokenizer does not fit: T and TE start fresh).
        return ["encoder."], ["decoder.", "tokenizer.", "estimator."]

    def _carried(self, state, own, prefix: str, path: str) -> Tuple[Dict[str, torch.Tensor], str]:
        """The tensors of network ``prefix`` taken from the checkpoint, and a note for the log.
        The decoder head is re-initialised alone when only its shape changed."""
        keys = [k for k in own if k.startswith(prefix)]
        name = prefix.rstrip(".")
        if not any(k in state for k in keys):
            return {}, f"{name} fresh (not in the checkpoint)"
        mismatch = [k for k in keys if k not in state or state[k].shape != own[k].shape]
        head = [k for k in mismatch if k.startswith("decoder.head.")]
        if prefix == "decoder." and mismatch and len(head) == len(mismatch):
            take = {k: state[k] for k in keys if k not in head}
            shapes = {k: (tuple(state[k].shape) if k in state else None) for k in head}
            return take, (
                f"decoder carried, its head re-initialised (shape {shapes['decoder.head.weight']} "
                f"-> {tuple(own['decoder.head.weight'].shape)})"
            )
        if mismatch:
            if prefix == "decoder.":
                raise ConfigValueError(
                    f"MODEL.WEIGHTS '{path}': the decoder does not fit the {self.phase} phase model "
                    f"({len(mismatch)} tensors missing or of other shapes, e.g. {mismatch[:3]}). Use the "
                    "checkpoint's MODEL.DECODER settings, or set PRETRAIN.CARRY_DECODER False to start a fresh decoder."
                )
            logger.warning(f"{name} in '{path}' does not fit ({mismatch[:3]} ...): it starts fresh")
            return {}, f"{name} fresh (checkpoint's does not fit)"
        return {k: state[k] for k in keys}, f"{name} carried"

    def load_initial_weights(self, path: str) -> None:
        state = checkpoint_state(path)
        required, carried = self._handover_plan(state)
        model = self.model_without_ddp
        quantizer = model.tokenizer.quantizer
        # Training bookkeeping (the usage window) belongs to the phase that trains the quantizer:
        # a resume restores it, a new phase starts it afresh (neither taken nor required).
        kept = quantizer.bookkeeping_state_keys() if supports(quantizer, BookkeepingState) else []
        bookkeeping = {"tokenizer.quantizer." + k for k in kept}
        own = {k: v for k, v in model.state_dict().items() if k not in bookkeeping}
        state = {k: v for k, v in state.items() if k not in bookkeeping}
        # A tokenizer phase re-initialises the codebook state only: the tensors the quantizer
        # declares as such (codebook_state_keys()); its other trained layers are handed over.
        declared = self.phase == "tokenizer" and supports(quantizer, CodebookState)
        fresh_codebooks = {"tokenizer.quantizer." + k for k in quantizer.codebook_state_keys()} if declared else set()

        def wanted_key(k: str) -> bool:
            return k.startswith(tuple(required)) and k not in fresh_codebooks

        take = {k: v for k, v in state.items() if wanted_key(k)}
        wanted = [k for k in own if wanted_key(k)]
        missing = [k for k in wanted if k not in take]
        bad_shape = [k for k in wanted if k in take and take[k].shape != own[k].shape]
        if missing or bad_shape:
            raise ConfigValueError(
                f"MODEL.WEIGHTS '{path}' does not fit the {self.phase} phase model: "
                f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(bad_shape)} with other shapes "
                f"(e.g. {[(k, tuple(take[k].shape), tuple(own[k].shape)) for k in bad_shape[:3]]}). "
                "Check that MODEL.ENCODER/TOKENIZER/QUANTIZER/PATCH_EMBED match the checkpoint's config."
            )
        load = {k: take[k] for k in wanted}
        notes = [f"{p.rstrip('.')} loaded" for p in required]
        for prefix in carried:
            extra, note = self._carried(state, own, prefix, path)
            load.update(extra)
            notes.append(note)
        model.load_state_dict(load, strict=False)
        fresh = sorted({k.split(".")[0] for k in own if k not in load})
        logger.info(
            f"{self.phase} phase hand-over from {path}: {len(load)} tensors; {'; '.join(notes)}; "
            f"networks with fresh tensors: {', '.join(fresh) or 'none'}"
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
