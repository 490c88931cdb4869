"""SOLVER.COMPILE with several ranks: ``torch.compile(DistributedDataParallel(model))``, as the
trainer builds it (bridle/engine/defaults.py), on two gloo processes. The tokenizer phase's
first-batch codebook init runs inside ``torch.cond`` and broadcasts rank 0's k-means codes; dynamo
cannot trace ``dist.broadcast``, so the compiled forward failed there until the broadcast became
the functional collective (bridle/utils/comm.py). Compiled DDP steps give the eager DDP numbers
(backend ``aot_eager``, as test_compile_fullgraph.py), the codebooks and usage windows are the
same on both ranks, and dead codes were restarted on the way."""

import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from test_compile_fullgraph import _batch, _max_diff, _model

STEPS = 12
WORLD = 2


def _train(model, runnable, rank: int):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, foreach=False)
    for step in range(STEPS):
        model.global_step = step
        torch.manual_seed(step)  # as the StepSeeder hook
        out = runnable(_batch(WORLD * step + rank))  # each rank its own data
        sum(v for k, v in out.items() if k.startswith("loss")).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def _worker(rank: int, init_file: str, out_dir: str, phase: str, cold: bool) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=120)
    )
    try:
        torch.set_num_threads(1)
        from bridle.plugins import load_plugins

        load_plugins(force=True)
        states = {}
        for how in ("eager", "compiled"):
            model = _model(phase, cold)  # seeded: the same weights on both ranks
            ddp = DistributedDataParallel(
                model, broadcast_buffers=False, find_unused_parameters=model.ddp_find_unused_parameters
            )
            torch._dynamo.reset()
            runnable = torch.compile(ddp, backend="aot_eager") if how == "compiled" else ddp
            _train(model, runnable, rank)
            states[how] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save(states, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch._dynamo.reset()
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("phase,cold", [("tokenizer", False), ("encoder", True)], ids=["tokenizer", "encoder_cold"])
def test_compiled_ddp_equals_eager_ddp(toy_plugin, tmp_path, phase, cold):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path), phase, cold), nprocs=WORLD, join=True)
    r0, r1 = (torch.load(os.path.join(tmp_path, f"rank{r}.pt")) for r in range(WORLD))
    for how in ("eager", "compiled"):  # DDP keeps the replicas equal, the quantizer state included
        worst = max(_max_diff(r0[how][k], r1[how][k]) for k in r0[how])
        assert worst == 0.0, (how, worst)
    worst = {k: _max_diff(r0["eager"][k], r0["compiled"][k]) for k in r0["eager"]}
    assert max(worst.values()) <= 1e-6, sorted(worst.items(), key=lambda kv: -kv[1])[:5]
    q = {k[len("tokenizer.quantizer.") :]: v for k, v in r0["compiled"].items() if k.startswith("tokenizer.quantizer.")}
    assert bool(q["initialized"])
    if phase == "tokenizer":
        assert int(q["num_updates"]) == STEPS
        assert (q["window.age"] < q["num_updates"]).any(), "no dead code was restarted: the test would miss restarts"
