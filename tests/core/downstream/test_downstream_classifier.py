"""EncoderClassifier: pooling, head init, losses, layer ids, frozen encoder."""

import pytest
import torch
import torch.nn.functional as F

from bridle.modeling.classifier import EncoderClassifier
from bridle.registry import META_ARCH


def test_registered_and_forward_pools_patch_tokens_without_cls(make_cfg):
    assert META_ARCH.get("EncoderClassifier") is EncoderClassifier
    model = EncoderClassifier(make_cfg("MODEL.HEAD.INIT_STD", 0.5)).eval()
    with torch.no_grad():  # a final norm that is not the identity, so that its use would show
        model.encoder.norm.weight.uniform_(0.5, 2.0)
        model.encoder.norm.bias.normal_()
    x = torch.randn(5, 1, 32, 32)
    with torch.no_grad():
        logits = model({"input": x})
        enc = model.encoder  # reference: embed -> cls -> blocks, no final norm (MAE global pool)
        tokens = enc.patch_embed(x) + enc.pos_embed[:, 1:]
        tokens = torch.cat([(enc.cls_token + enc.pos_embed[:, :1]).expand(5, -1, -1), tokens], 1)
        for blk in enc.blocks:
            tokens = blk(tokens)
        ref = model.head(model.fc_norm(tokens[:, 1:].mean(1)))
        with_cls = model.head(model.fc_norm(tokens.mean(1)))
        with_final_norm = model.head(model.fc_norm(enc(x)[:, 1:].mean(1)))
    assert logits.shape == (5, 4)
    torch.testing.assert_close(logits, ref)
    assert not torch.allclose(logits, with_cls, atol=1e-4)
    assert not torch.allclose(logits, with_final_norm, atol=1e-4)
    # the unused final norm does not train (DDP would otherwise wait for its gradients)
    assert not any(p.requires_grad for p in model.encoder.norm.parameters())


def test_head_init_and_batchnorm_option(make_cfg):
    model = EncoderClassifier(make_cfg("MODEL.HEAD.NUM_CLASSES", 500, "MODEL.HEAD.BATCHNORM", True))
    w = model.head.weight.detach()
    assert torch.all(model.head.bias == 0)
    assert 1.5e-5 < float(w.std()) < 2.5e-5  # trunc-normal std 2e-5 (default MODEL.HEAD.INIT_STD)
    assert isinstance(model.bn, torch.nn.BatchNorm1d) and not model.bn.affine
    assert EncoderClassifier(make_cfg()).bn is None


def test_losses(make_cfg):
    torch.manual_seed(0)
    x = torch.randn(6, 1, 32, 32)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    model = EncoderClassifier(make_cfg("MODEL.HEAD.LABEL_SMOOTHING", 0.1, "MODEL.HEAD.INIT_STD", 0.02))
    model.train()
    torch.manual_seed(1)
    out = model({"input": x, "label": labels})
    assert set(out) == {"loss_cls"}
    model.eval()
    with torch.no_grad():
        logits = model({"input": x})
        assert torch.allclose(model.loss(logits, labels), F.cross_entropy(logits, labels, label_smoothing=0.1))
        soft = torch.softmax(torch.randn(6, 4), 1)
        ref = -(soft * F.log_softmax(logits, 1)).sum(1).mean()
        assert torch.allclose(model.loss(logits, soft), ref)
    bce = EncoderClassifier(make_cfg("MODEL.HEAD.LOSS", "bce"))
    multi = torch.tensor([[1.0, 0, 1, 0]] * 6)
    with torch.no_grad():
        assert torch.allclose(bce.loss(logits, multi), F.binary_cross_entropy_with_logits(logits, multi))
        assert torch.allclose(
            bce.loss(logits, labels), F.binary_cross_entropy_with_logits(logits, F.one_hot(labels, 4).float())
        )
    with pytest.raises(ValueError, match="MODEL.HEAD.LOSS"):
        EncoderClassifier(make_cfg("MODEL.HEAD.LOSS", "focal"))
    model.train()
    with pytest.raises(KeyError, match="label"):
        model({"input": x})


def test_layer_ids_and_drop_path(make_cfg):
    model = EncoderClassifier(make_cfg("MODEL.ENCODER.DROP_PATH", 0.1))
    assert model.num_layers == 3
    assert model.layer_id("encoder.pos_embed") == 0
    assert model.layer_id("encoder.patch_embed.proj.weight") == 0
    assert model.layer_id("encoder.blocks.0.attn.qkv.weight") == 1
    assert model.layer_id("encoder.blocks.1.mlp.fc1.bias") == 2
    assert model.layer_id("encoder.norm.weight") == 3
    assert model.layer_id("fc_norm.weight") == 3 and model.layer_id("head.weight") == 3
    assert model.encoder.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)


def test_frozen_encoder_stays_in_eval_mode(make_cfg):
    model = EncoderClassifier(make_cfg("MODEL.ENCODER.DROP_PATH", 0.5))
    model.freeze_encoder()
    model.train()
    assert model.training and model.head.training
    assert not any(m.training for m in model.encoder.modules())
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    x = torch.randn(2, 1, 32, 32)
    out = model({"input": x, "label": torch.tensor([0, 1])})
    out["loss_cls"].backward()
    assert all(p.grad is None for p in model.encoder.parameters())
