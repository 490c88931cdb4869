import pytest
import torch

from bridle.registry import DATASET, TRANSFORM


def _digit_batch(cfg, n):
    ds = DATASET.get("digits")(cfg, "train", "eval")
    items = [ds[i] for i in range(n)]
    return {
        "input": torch.stack([it["input"] for it in items]),
        "label": torch.stack([it["label"] for it in items]),
        "num_skipped": torch.tensor(0),
    }


@pytest.mark.parametrize("cutmix_only", [False, True])
def test_mixup_cutmix_mixes_inputs_and_makes_soft_labels(image_cfg, cutmix_only):
    if cutmix_only:
        image_cfg.INPUT.IMAGE.MIXUP.ALPHA = 0.0
    mix = TRANSFORM.get("mixup_cutmix")(image_cfg, "finetune")
    batch = _digit_batch(image_cfg, 8)
    original, hard = batch["input"].clone(), batch["label"].clone()
    out = mix(batch)
    y = out["label"]
    assert y.shape == (8, 10) and y.is_floating_point()
    assert torch.allclose(y.sum(1), torch.ones(8))
    assert (y.max(1).values < 1.0).all()  # soft: smoothing and/or mixing
    assert not torch.equal(out["input"], original)
    assert out["input"].shape == original.shape and int(out["num_skipped"]) == 0
    # Mixed pairs: sample i is mixed with sample B-1-i (timm "batch" mode flips the batch).
    top2 = y.topk(2, dim=1).indices
    for i in range(8):
        j = 7 - i
        if hard[i] != hard[j]:
            assert set(top2[i].tolist()) == {int(hard[i]), int(hard[j])}


def test_mixup_cutmix_handles_odd_batches(image_cfg):
    mix = TRANSFORM.get("mixup_cutmix")(image_cfg, "finetune")
    batch = _digit_batch(image_cfg, 5)
    last_input, last_label = batch["input"][4].clone(), int(batch["label"][4])
    out = mix(batch)
    assert out["label"].shape == (5, 10)
    assert torch.equal(out["input"][4], last_input)  # the odd one out stays unmixed
    smoothing = image_cfg.INPUT.IMAGE.MIXUP.LABEL_SMOOTHING
    expected = torch.full((10,), smoothing / 10)
    expected[last_label] += 1 - smoothing
    assert torch.allclose(out["label"][4], expected)
    single = mix(_digit_batch(image_cfg, 1))
    assert single["label"].shape == (1, 10)


def test_mixup_cutmix_on_clips_cuts_the_same_box_in_every_frame(image_cfg):
    image_cfg.INPUT.IMAGE.MIXUP.ALPHA = 0.0  # cutmix only
    mix = TRANSFORM.get("mixup_cutmix")(image_cfg, "finetune")
    clip = torch.arange(4.0).view(4, 1, 1, 1, 1).expand(4, 3, 5, 16, 16).contiguous()  # [B, C, T, H, W]
    labels = torch.arange(4)
    out = mix({"input": clip.clone(), "label": labels})
    changed = out["input"] != clip
    assert changed.any()
    assert (changed == changed[:, :, :1]).all()  # same spatial box for every frame and channel


def test_mixup_cutmix_is_identity_outside_finetune(image_cfg):
    for mode in ("pretrain", "linear_probe", "eval"):
        mix = TRANSFORM.get("mixup_cutmix")(image_cfg, mode)
        batch = _digit_batch(image_cfg, 4)
        before = {k: v.clone() for k, v in batch.items()}
        out = mix(batch)
        assert all(torch.equal(out[k], before[k]) for k in before), mode


def test_mixup_cutmix_rejects_wrong_multi_hot_width(image_cfg):
    mix = TRANSFORM.get("mixup_cutmix")(image_cfg, "finetune")
    with pytest.raises(ValueError, match="MODEL.HEAD.NUM_CLASSES"):
        mix({"input": torch.zeros(2, 3, 32, 32), "label": torch.zeros(2, 7)})
