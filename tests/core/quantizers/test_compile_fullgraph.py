"""Every BRIDLE phase's training forward compiles as one graph (``torch.compile(fullgraph=True)``:
no graph break, no recompilation from step to step) and 20 compiled training steps (forward,
backward, AdamW) give the eager numbers: the quantizer's first-batch init, EMA, usage window,
dead-code restarts and metrics included (issue #23, item 3).

The backend is ``aot_eager`` (Dynamo's capture, AOTAutograd's functionalisation of the buffer
updates and the joint forward/backward graph, eager kernels): what decides graph breaks and
state semantics, without the minutes of C++ code generation that inductor takes on this CPU.
``BRIDLE_COMPILE_BACKEND=inductor`` runs the same test with inductor (fp32 kernels of their own:
equal within 1e-5, not bitwise), with ``fallback_random``: inductor otherwise draws the random
numbers of the masks and of the k-means seeding its own way (the restarts draw none), and with
plain SGD: AdamW turns the rounding noise of parameters whose gradient is exactly zero (the
attention key biases: softmax ignores a shift) into lr-sized steps, 4e-4 apart after 20 steps.
"""

import contextlib
import copy
import os

import pytest
import torch

from bridle.config import get_cfg
from bridle.modeling.bridle_model import BridleModel
from toy_plugin import toy_opts

BACKEND = os.environ.get("BRIDLE_COMPILE_BACKEND", "aot_eager")
STEPS = 20
TOL = 0.0 if BACKEND in ("eager", "aot_eager") else 1e-5


@pytest.fixture(autouse=True)
def _toy_modality(toy_plugin):
    """A tiny model of the third-party toy modality (tests/toy_plugin.py)."""


def _model(phase: str, cold: bool) -> BridleModel:
    cfg = get_cfg()
    # Short usage window and restart period: codes die and are restarted within 20 steps.
    extra = {
        "MODEL.QUANTIZER.DEAD_CODE_WINDOW": 3,
        "MODEL.QUANTIZER.RESTART_PERIOD": 2,
        "MODEL.QUANTIZER.CODEBOOK_SIZE": 32,
        "PRETRAIN.JOINT_TOKENIZER_PERIOD": 2,
    }
    cfg.merge_from_list(toy_opts("/tmp/unused", **extra))
    cfg.MODEL.TOKENIZER.COLD_START = cold
    torch.manual_seed(0)
    model = BridleModel(cfg, phase)
    if phase == "encoder":  # a frozen tokenizer is initialised before training (the trainer's hook)
        model.init_tokenizer_codebooks(_batch(-1)["input"])
    return model.train()  # a trained quantizer initialises itself on its first batch, in the graph


def _batch(step: int) -> dict:
    g = torch.Generator().manual_seed(1000 + step)
    t = torch.arange(64.0)
    freqs = torch.randint(1, 5, (8, 1), generator=g).float()
    return {"input": torch.sin(t * freqs / 4) + 0.05 * torch.randn(8, 64, generator=g)}


def _train(model: BridleModel, runnable, steps: int):
    params = [p for p in model.parameters() if p.requires_grad]
    if BACKEND in ("eager", "aot_eager"):
        opt = torch.optim.AdamW(params, lr=1e-3, foreach=False)
    else:  # AdamW would scale the rounding noise of zero-gradient parameters (attention key biases) to lr-sized steps
        opt = torch.optim.SGD(params, lr=1e-2)
    metrics = []
    for step in range(steps):
        model.global_step = step
        torch.manual_seed(step)  # as the StepSeeder hook: masks are a function of the step
        out = runnable(_batch(step))
        sum(v for k, v in out.items() if k.startswith("loss")).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        metrics.append({k: v.detach().clone() for k, v in out.items()})  # read after the step
    return metrics


def _same_random_numbers():
    if BACKEND != "inductor":
        return contextlib.nullcontext()
    import torch._inductor.config

    return torch._inductor.config.patch(fallback_random=True)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.is_floating_point():
        return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
    return 0.0 if torch.equal(a, b) else float("inf")


@pytest.mark.slow
@pytest.mark.parametrize(
    "phase,cold,graphs",
    [("encoder", True, 1), ("tokenizer", False, 1), ("encoder", False, 1), ("joint", False, 2)],
    ids=["encoder_cold", "tokenizer", "encoder", "joint"],
)
def test_compiled_step_is_one_graph_and_equals_eager(phase, cold, graphs):
    from torch._dynamo.testing import CompileCounterWithBackend

    eager = _model(phase, cold)
    compiled = copy.deepcopy(eager)
    torch._dynamo.reset()
    counter = CompileCounterWithBackend(BACKEND)
    # fullgraph=True: any graph break is an error; the counter sees every (re)compilation.
    runnable = torch.compile(compiled, backend=counter, fullgraph=True)
    ref = _train(eager, eager, STEPS)
    with _same_random_numbers():
        got = _train(compiled, runnable, STEPS)
    torch._dynamo.reset()
    # One graph per phase; the joint phase has two (steps with and without the tokenizer loss).
    assert counter.frame_count == graphs, f"{counter.frame_count} compilations"

    q = compiled.tokenizer.quantizer
    if phase in ("tokenizer", "joint"):
        assert q.is_initialized() and int(q.num_updates) == (STEPS if phase == "tokenizer" else STEPS // 2)
        # some codes were restarted (their age restarted below the number of updates)
        assert (q.window.age < q.num_updates).any(), "no dead code was restarted: the test would miss restarts"
    ref_state, got_state = eager.state_dict(), compiled.state_dict()
    assert ref_state.keys() == got_state.keys()
    worst = {k: _max_diff(ref_state[k], got_state[k]) for k in ref_state}
    assert max(worst.values()) <= TOL, sorted(worst.items(), key=lambda kv: -kv[1])[:5]
    for step, (a, b) in enumerate(zip(ref, got)):
        assert a.keys() == b.keys(), step
        # relative for the metrics: a perplexity is up to CODEBOOK_SIZE
        bad = {k: _max_diff(a[k], b[k]) for k in a if _max_diff(a[k], b[k]) > TOL * max(1.0, a[k].abs().max().item())}
        assert not bad, (step, bad)
