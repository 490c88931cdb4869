"""Our Euclidean RQ (LOOKUP euclidean, k-means++ init) against vector_quantize_pytorch.ResidualVQ
(test-only dependency):
same levels / codes / dims, same clustered data, same number of EMA steps (decay 0.99,
k-means init with 10 iterations on both sides). Errors are averaged over three data sets so
that the comparison does not hinge on one random draw."""

import pytest
import torch

from bridle.modeling.quantizers import ResidualQuantizer
from qz_helpers import ClusteredData, per_level_errors, single_thread  # noqa: F401  (autouse fixture)

LEVELS, CODES, DIM, STEPS, BATCH, SEEDS = 4, 64, 32, 30, 2048, (0, 1, 2)


def _train_and_measure(vqp, seed):
    data = ClusteredData(DIM, num_clusters=48, noise=0.1, seed=seed)
    test = data.sample(8192, 999)
    torch.manual_seed(seed)
    ours = ResidualQuantizer(
        LEVELS, CODES, DIM, lookup="euclidean", init="kmeans++", kmeans_iters=10, decay=0.99
    ).train()
    torch.manual_seed(seed)
    theirs = vqp.ResidualVQ(
        dim=DIM, num_quantizers=LEVELS, codebook_size=CODES, kmeans_init=True, kmeans_iters=10, decay=0.99
    ).train()
    for step in range(STEPS):
        x = data.sample(BATCH, step)
        ours(x)
        theirs(x[None])
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        out = ours(test)
        quantized, indices, _ = theirs(test[None])
        ours_levels = per_level_errors(ours.get_codebooks(), out.codes, test)
        theirs_levels = per_level_errors(theirs.codebooks, indices[0], test)
    ours_mse = ((out.quantized - test) ** 2).mean().item()
    theirs_mse = ((quantized[0] - test) ** 2).mean().item()
    assert ours_levels[-1] == pytest.approx(ours_mse, rel=1e-4)
    assert theirs_levels[-1] == pytest.approx(theirs_mse, rel=1e-4)
    return torch.tensor(ours_levels), torch.tensor(theirs_levels)


def test_rq_reconstructs_no_worse_than_residual_vq():
    vqp = pytest.importorskip("vector_quantize_pytorch")
    runs = [_train_and_measure(vqp, seed) for seed in SEEDS]
    ours = torch.stack([r[0] for r in runs])  # [seeds, levels]
    theirs = torch.stack([r[1] for r in runs])
    fmt = lambda t: "[" + ", ".join(f"{v:.5f}" for v in t.tolist()) + "]"  # noqa: E731
    print(
        f"\nRQ {LEVELS}x{CODES}x{DIM}, {STEPS} EMA steps of {BATCH} rows, held-out MSE "
        f"(data seeds {SEEDS}; per level = after 1..{LEVELS} levels, mean over seeds):"
        f"\n  bridle RQ           final per seed {fmt(ours[:, -1])}  per level {fmt(ours.mean(0))}"
        f"\n  vector_quantize RVQ final per seed {fmt(theirs[:, -1])}  per level {fmt(theirs.mean(0))}"
    )
    assert ours[:, -1].mean() <= theirs[:, -1].mean()
