"""Two gloo processes with different data: codebooks and usage windows stay identical on both
ranks after initialisation, after a (usage-window) restart and after EMA steps, EMA and usage
use the statistics of both ranks, and eval forwards call no collective."""

import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bridle.modeling.quantizers import ResidualQuantizer, VectorQuantizer
from qz_helpers import ClusteredData, single_thread  # noqa: F401  (autouse fixture)

WORLD = 2
ROWS = 96


def _batch(data, rank, step):
    return data.sample(ROWS, seed=1000 * rank + step)  # different rows on every rank


def _make(kind, seed, **kw):
    torch.manual_seed(seed)
    if kind == "rq":
        return ResidualQuantizer(2, 16, 8, decay=0.9, **kw)
    return VectorQuantizer(16, 8, decay=0.9, **kw)


def _assert_same_on_all_ranks(q, what):
    from bridle.utils import comm

    for name, t in (("codebook", q.codebook.detach()), ("usage", q.usage)):
        gathered = comm.all_gather_cat(t.float().unsqueeze(0).contiguous())
        assert torch.equal(gathered[0], gathered[1]), f"{name} differs across ranks {what}"


def _worker(rank, init_file, out_dir):
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
    )
    try:
        torch.set_num_threads(1)
        data = ClusteredData(8, num_clusters=6, noise=0.1)
        for kind in ("rq", "vq"):
            # Different seeds: the random draws of the constructor differ on the two ranks.
            q = _make(kind, seed=100 + rank, restart_period=3, dead_code_window=2).train()
            q(_batch(data, rank, 0))  # k-means init (rank 0's batch, broadcast) + EMA step
            _assert_same_on_all_ranks(q, f"after init ({kind})")
            # usage counts are global: after init + one EMA step every level sums to both ranks' rows
            torch.testing.assert_close(q.usage.sum(dim=-1), torch.full((q.num_levels,), float(WORLD * ROWS)))

            with torch.no_grad():  # the same three codes die on both ranks
                far = torch.full((8,), -10.0)
                q.codebook.data[0, :3] = far / far.norm()  # unit codes opposite to the data
            before = q.codebook.detach().clone()
            q(_batch(data, rank, 1))  # the window still holds forward 0, where the codes were used
            q(_batch(data, rank, 2))  # third training forward: restart (window 2 elapsed)
            revived = q.window.age[0] == 0  # restarted codes start a new life
            assert revived[:3].any() and not revived[3:].any(), "the dead codes were not restarted"
            assert not torch.equal(q.codebook[0, revived], before[0, revived])
            assert (q.usage[0, revived] == 0).all()  # state reset
            _assert_same_on_all_ranks(q, f"after restart ({kind})")

            for step in range(5):
                q(_batch(data, rank, 3 + step))
            _assert_same_on_all_ranks(q, f"after 5 EMA steps ({kind})")

            q.eval()  # eval forwards on rank 0 only: a collective here would pair wrongly or hang
            if rank == 0:
                for _ in range(2):
                    q(_batch(data, rank, 50))
            _assert_same_on_all_ranks(q, f"after eval ({kind})")

            # EMA with both ranks' statistics == one process that sees both batches.
            q = _make(kind, seed=7 + rank, restart_dead_codes=False).train()
            q.init_codebook(_batch(data, rank, 10))
            if rank == 0:
                torch.save(q.state_dict(), os.path.join(out_dir, f"{kind}_init.pt"))
            for step in range(5):
                q(_batch(data, rank, 11 + step))
            if rank == 0:
                torch.save(q.state_dict(), os.path.join(out_dir, f"{kind}_final.pt"))
                torch.save(q.usage.clone(), os.path.join(out_dir, f"{kind}_usage.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_codebooks_stay_identical(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    data = ClusteredData(8, num_clusters=6, noise=0.1)
    for kind in ("rq", "vq"):
        q = _make(kind, seed=0, restart_dead_codes=False).train()
        q.load_state_dict(torch.load(tmp_path / f"{kind}_init.pt", weights_only=True))
        assert q.is_initialized()
        for step in range(5):
            both = torch.cat([_batch(data, r, 11 + step) for r in range(WORLD)])
            q(both)
        final = torch.load(tmp_path / f"{kind}_final.pt", weights_only=True)
        torch.testing.assert_close(q.codebook.detach(), final["codebook"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(q.usage, torch.load(tmp_path / f"{kind}_usage.pt", weights_only=True))
