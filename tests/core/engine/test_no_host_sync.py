"""No host sync in a training step: each BRIDLE phase and a fine-tuning step run on CUDA under
``torch.cuda.set_sync_debug_mode("error")`` (any synchronising call raises). Skipped on CPU."""

import pytest
import torch

from bridle.benchmark import RepeatLoader  # the benchmark's loader: the same batch forever
from bridle.config import get_cfg
from bridle.engine.events import EventStorage
from bridle.engine.train_loop import SimpleTrainer
from bridle.modeling.bridle_model import BridleModel
from bridle.solver import build_optimizer
from toy_plugin import toy_opts

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (sync debug mode)")


@pytest.fixture(autouse=True)
def _toy_modality(toy_plugin):
    """Runs on the third-party toy modality (tests/toy_plugin.py)."""


def _steps_without_sync(model, batch, cfg, precision, clip=0.0):
    device = torch.device("cuda")
    trainer = SimpleTrainer(
        model, RepeatLoader(batch), build_optimizer(cfg, model), precision=precision, clip_grad=clip, device=device
    )
    trainer.storage = EventStorage()
    trainer.run_step()  # first step: lazy inits (a training quantizer's codebook init) may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            trainer.run_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    trainer.storage.flush()


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("phase,cold", [("encoder", True), ("tokenizer", False), ("encoder", False), ("joint", False)])
def test_pretrain_step_has_no_host_sync(tmp_path, phase, cold, precision):
    cfg = get_cfg()
    cfg.merge_from_list(toy_opts(str(tmp_path), **{"MODEL.DEVICE": "cuda"}))
    cfg.MODEL.TOKENIZER.COLD_START = cold
    torch.manual_seed(0)
    model = BridleModel(cfg, phase).cuda().train()
    x = torch.randn(8, 64, device="cuda")
    model.init_tokenizer_codebooks(x)
    _steps_without_sync(model, {"input": x}, cfg, precision, clip=1.0)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_finetune_step_has_no_host_sync(tmp_path, precision):
    from bridle.registry import META_ARCH

    cfg = get_cfg()
    cfg.merge_from_list(toy_opts(str(tmp_path), **{"MODEL.DEVICE": "cuda"}))
    cfg.MODEL.HEAD.NUM_CLASSES = 4
    torch.manual_seed(0)
    model = META_ARCH.get("EncoderClassifier")(cfg).cuda().train()
    batch = {"input": torch.randn(8, 64, device="cuda"), "label": torch.randint(4, (8,), device="cuda")}
    _steps_without_sync(model, batch, cfg, precision, clip=1.0)
