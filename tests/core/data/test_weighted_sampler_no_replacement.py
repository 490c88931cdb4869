"""WeightedSampler drawing without replacement (the authors' AS-2M fine-tuning sampler)."""

import itertools

import pytest
import torch

from bridle.config import get_cfg
from bridle.data.weighted_sampler import WeightedSampler, build_weighted_sampler


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_an_epoch_holds_no_index_twice_and_follows_the_weights():
    weights = torch.tensor([8.0] * 10 + [1.0] * 90 + [0.0] * 20)
    s = WeightedSampler(weights, seed=0, samples_per_epoch=50, replacement=False)
    counts = torch.zeros(120)
    for epoch in range(200):
        draw = s.global_draw(epoch)
        assert draw.numel() == 50 and draw.unique().numel() == 50  # no repeats within an epoch
        counts += torch.bincount(draw, minlength=120)
    assert counts[100:].sum() == 0  # weight 0: never drawn
    # heavy items are drawn in almost every epoch, light ones far less often
    assert counts[:10].min() > 0.9 * 200 and counts[10:100].mean() < 0.5 * 200
    with_repl = WeightedSampler(weights, seed=0, samples_per_epoch=50, replacement=True)
    assert any(with_repl.global_draw(e).unique().numel() < 50 for e in range(20))


def test_sequential_law_of_the_first_draw():
    # the first index of an epoch is a weighted draw: P(i) = w_i / sum(w)
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0])
    s = WeightedSampler(weights, seed=1, samples_per_epoch=2, replacement=False)
    first = torch.tensor([int(s.global_draw(e)[0]) for e in range(4000)])
    freq = torch.bincount(first, minlength=4).double() / 4000
    assert torch.allclose(freq, weights.double() / weights.sum(), atol=0.03)


def test_ranks_shard_one_draw_and_resume_exactly():
    weights = torch.rand(300) + 0.1
    ranks = [
        WeightedSampler(weights, seed=5, rank=r, world_size=3, samples_per_epoch=120, replacement=False)
        for r in range(3)
    ]
    shards = [r.epoch_indices(0) for r in ranks]
    joined = torch.cat(shards)
    assert joined.unique().numel() == 120  # disjoint shards of one draw without repeats
    full = _take(ranks[2], 130)
    resumed = _take(
        WeightedSampler(
            weights, seed=5, rank=2, world_size=3, samples_per_epoch=120, replacement=False, start_index=57
        ),
        130 - 57,
    )
    assert resumed == full[57:]


def test_config_key_and_clear_error():
    class DS:
        def __len__(self):
            return 10

        def sample_weights(self):
            return torch.ones(10)

    cfg = get_cfg()
    cfg.DATALOADER.WEIGHTED_SAMPLER_REPLACEMENT = False
    cfg.DATALOADER.SAMPLES_PER_EPOCH = 8
    s = build_weighted_sampler(cfg, DS())
    assert not s.replacement and s.global_draw(0).unique().numel() == 8
    cfg.DATALOADER.SAMPLES_PER_EPOCH = 11
    with pytest.raises(ValueError, match="WEIGHTED_SAMPLER_REPLACEMENT"):
        build_weighted_sampler(cfg, DS())


def test_a_negative_seed_draws_the_same_stream_again_after_a_resume():
    """SEED < 0 (a clock seed for the model) must not make the data stream differ between a run
    and its resume: the sampler draws from seed 0, as TrainingSampler does."""

    class DS:
        def __len__(self):
            return 40

        def sample_weights(self):
            return torch.arange(1, 41, dtype=torch.float64)

    cfg = get_cfg()
    cfg.SEED = -1
    first = build_weighted_sampler(cfg, DS())
    stream = [i for _, i in zip(range(100), iter(first))]
    resumed = build_weighted_sampler(cfg, DS(), start_index=57)
    assert [i for _, i in zip(range(43), iter(resumed))] == stream[57:]
    cfg.SEED = 0
    assert [i for _, i in zip(range(100), iter(build_weighted_sampler(cfg, DS())))] == stream
