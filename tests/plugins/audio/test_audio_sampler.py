"""The core WeightedSampler (AST-style class balancing) with the audio datasets."""

import itertools

import numpy as np
import pytest
import torch

from bridle.config import get_cfg
from bridle.data.weighted_sampler import WeightedSampler, label_frequency_weights
from bridle.registry import SAMPLER
from bridle_audio.dataset import AudioClipDataset


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_label_frequency_weights_forms_agree():
    lists = [[0], [0], [0], [1], [0, 2], []]
    dense = torch.zeros(6, 3)
    for i, ls in enumerate(lists):
        dense[i, ls] = 1
    w = label_frequency_weights(lists, 3)
    assert torch.allclose(w, torch.tensor([0.25, 0.25, 0.25, 1.0, 1.25, 0.25], dtype=torch.float64))
    assert torch.equal(label_frequency_weights(dense), w)
    single = label_frequency_weights(torch.tensor([0, 0, 0, 1]))
    assert torch.allclose(single, torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="num_classes"):
        label_frequency_weights([[5]], 3)


def test_rare_classes_are_drawn_more_often():
    labels = [0] * 90 + [1] * 9 + [2] * 1  # class 2 is 1% of the data
    weights = label_frequency_weights(torch.tensor(labels))
    draws = torch.tensor(_take(WeightedSampler(weights, seed=0), 30000))
    share = torch.bincount(torch.tensor(labels)[draws], minlength=3).double() / len(draws)
    assert torch.allclose(share, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.02)
    uniform = torch.tensor(_take(WeightedSampler(torch.ones(100), seed=0), 30000))
    assert (torch.tensor(labels)[uniform] == 2).double().mean() < 0.02


def test_two_ranks_draw_disjoint_shards_of_one_common_draw():
    weights = label_frequency_weights(torch.tensor([0] * 50 + [1] * 5 + [2] * 45))
    n = 100
    ranks = [WeightedSampler(weights, seed=7, rank=r, world_size=2) for r in range(2)]
    assert all(s.per_rank == 50 for s in ranks)
    for epoch in range(3):
        common = ranks[0].global_draw(epoch)
        assert torch.equal(common, ranks[1].global_draw(epoch))  # same on every rank
        shards = [s.epoch_indices(epoch) for s in ranks]
        # Disjoint positions of the common draw, together exactly the draw.
        assert torch.equal(torch.stack(shards, 1).flatten(), common)
        assert len(shards[0]) == len(shards[1]) == n // 2
    streams = [_take(s, 150) for s in ranks]
    assert streams[0][:50] == ranks[0].epoch_indices(0).tolist()
    assert streams[0][50:100] == ranks[0].epoch_indices(1).tolist()
    assert streams[0] != streams[1]
    # Different epochs differ; a different seed differs; the same seed repeats.
    assert not torch.equal(ranks[0].global_draw(0), ranks[0].global_draw(1))
    assert not torch.equal(ranks[0].global_draw(0), WeightedSampler(weights, seed=8).global_draw(0)[:100])
    assert _take(WeightedSampler(weights, seed=7, rank=1, world_size=2), 150) == streams[1]


def test_start_index_resumes_the_stream_exactly():
    weights = torch.rand(37, generator=torch.Generator().manual_seed(0)).double()
    for world in (1, 3):
        full = _take(WeightedSampler(weights, seed=3, rank=world - 1, world_size=world), 200)
        for start in (0, 5, 13, 50, 121):
            resumed = _take(
                WeightedSampler(weights, seed=3, start_index=start, rank=world - 1, world_size=world), 200 - start
            )
            assert resumed == full[start:], (world, start)


def test_registry_entry_uses_dataset_sample_weights(audio_corpus, cfg_factory):
    cfg = cfg_factory()
    cfg.SEED = 11
    paths = (audio_corpus.speech * 4)[:20]
    labels = [[0]] * 18 + [[1], [1, 2]]
    ds = AudioClipDataset(cfg, paths, "finetune", labels=labels, num_classes=3, multi_label=True)
    sampler = SAMPLER.get("WeightedSampler")(cfg, ds, 0)
    draws = np.array(_take(sampler, 4000))
    rare = np.isin(draws, [18, 19]).mean()
    assert rare > 0.45  # 2 of 20 items, but half of the label mass
    assert _take(SAMPLER.get("WeightedSampler")(cfg, ds, 100), 50) == draws[100:150].tolist()

    class NoWeights(torch.utils.data.Dataset):
        def __len__(self):
            return 3

    with pytest.raises(TypeError, match="sample_weights"):
        SAMPLER.get("WeightedSampler")(get_cfg(load_plugins=False), NoWeights(), 0)
    with pytest.raises(ValueError, match="not all zero"):
        WeightedSampler(torch.zeros(4))
