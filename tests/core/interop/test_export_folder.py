"""Exported folders: no pickle, Bridle <-> folder round trip, timm equality (image and audio-shaped
encoders), classifier with label names, the .pth layout kept, the model card's content."""

import json
import os

import pytest
import torch

import bridle
from bridle.checkpoint import load_checkpoint_file, read_folder_config
from bridle.errors import UserError
from bridle.interop.hub import DEFAULT_LICENSE, export, export_folder, read_label_names
from export_helpers import AUDIO, IMAGE, classifier_checkpoint, pretrain_checkpoint, tiny_cfg

FILES = {"model.safetensors", "config.yaml", "config.json", "README.md"}


def _x(cfg, b=2):
    size = list(cfg.MODEL.PATCH_EMBED.INPUT_SIZE)
    return torch.randn(b, *([3] if int(cfg.MODEL.PATCH_EMBED.IN_CHANS) == 3 else []), *size)


@pytest.fixture(params=["image", "audio"])
def exported(request, tmp_path):
    cfg = tiny_cfg(IMAGE if request.param == "image" else AUDIO)
    enc, _ = pretrain_checkpoint(cfg, tmp_path / "model_final.pth")
    (tmp_path / "metrics.json").write_text(
        '{"iteration": 6, "total_loss": 2.5}\n{"iteration": 7, "total_loss": 2.25}\n'
    )
    conf = export_folder(tmp_path / "model_final.pth", tmp_path / "enc", license="cc-by-4.0")
    return cfg, enc, conf, tmp_path / "enc", request.param


def test_folder_holds_no_pickle(exported):
    _, _, conf, folder, _ = exported
    assert set(os.listdir(folder)) == FILES
    raw = (folder / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])  # safetensors: a JSON header, then raw tensor bytes
    assert "pos_embed" in header and "cls_token" in header
    for name in FILES:  # neither a pickle (0x80 protocol byte) nor torch.save's zip
        head = (folder / name).read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK"
    assert read_folder_config(folder) == json.loads((folder / "config.json").read_text())
    assert conf["kind"] == "encoder" and conf["license"] == "cc-by-4.0"


def test_roundtrip_bridle_folder(exported):
    cfg, enc, conf, folder, modality = exported
    loaded = bridle.load_encoder(str(folder))
    x = _x(cfg)
    with torch.no_grad():
        assert torch.equal(enc(x), loaded(x))
    assert loaded.cfg.MODEL.PATCH_EMBED.NAME == cfg.MODEL.PATCH_EMBED.NAME and loaded.cfg.is_frozen()
    assert loaded.export_config["input"]["modality"] == modality
    assert conf["grid_size"] == list(enc.grid_size)
    # a folder is a checkpoint for every loader (MODEL.WEIGHTS, extract_features, re-export)
    assert "encoder" == load_checkpoint_file(folder)["export"]["kind"]
    again = export_folder(folder, folder.parent / "again")
    assert again["timm"] == conf["timm"]


def test_timm_loads_the_folder_with_equal_outputs(exported):
    timm = pytest.importorskip("timm")
    from safetensors.torch import load_file

    cfg, enc, conf, folder, modality = exported
    spec = json.loads((folder / "config.json").read_text())["timm"]
    assert spec["kwargs"]["in_chans"] == (3 if modality == "image" else 1)
    assert spec["kwargs"]["img_size"] == list(cfg.MODEL.PATCH_EMBED.INPUT_SIZE)
    model = timm.create_model(spec["model_name"], pretrained=False, **spec["kwargs"]).eval()
    model.load_state_dict(load_file(str(folder / "model.safetensors")))  # strict: every key matches
    x = _x(cfg)
    xt = x if modality == "image" else x[:, None]  # timm: [B, 1, frames, mel]
    with torch.no_grad():
        tokens = enc(x)
        assert (model.forward_features(xt) - tokens).abs().max() <= 1e-5
        assert (model(xt) - tokens[:, 1:].mean(1)).abs().max() <= 1e-5  # = tools/extract_features.py


def test_model_card(exported):
    cfg, _, conf, folder, modality = exported
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-4.0\n")
    for text in (f"modality: {modality}", "width 64, depth 2", "encoder_cold", "`rq`", "total_loss | 2.25"):
        assert text in card, text
    assert ("hear-validator bridle_audio.hear" in card) == (modality == "audio")
    assert "timm.create_model" in card and "bridle.load_encoder" in card
    assert conf["metrics"]["metrics.json"]["total_loss"] == 2.25


def test_classifier_exports_head_and_label_names(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import load_file

    cfg = tiny_cfg(IMAGE)
    clf = classifier_checkpoint(cfg, tmp_path / "clf.pth", num_classes=3)
    (tmp_path / "labels.csv").write_text("index,mid,display_name\n0,/m/a,Cat\n1,/m/b,Dog\n2,/m/c,Bird\n")
    names = read_label_names(str(tmp_path / "labels.csv"))
    conf = export_folder(tmp_path / "clf.pth", tmp_path / "clf", label_names=names)
    assert conf["kind"] == "classifier" and conf["label_names"] == ["Cat", "Dog", "Bird"]
    model, labels = bridle.load_classifier(str(tmp_path / "clf"))
    assert labels == ["Cat", "Dog", "Bird"]
    x = _x(cfg, 4)
    with torch.no_grad():
        ref = clf(x)
        assert torch.equal(model(x), ref)
        t = timm.create_model(conf["timm"]["model_name"], pretrained=False, **conf["timm"]["kwargs"]).eval()
        t.load_state_dict(load_file(str(tmp_path / "clf" / "model.safetensors")))
        assert (t(x) - ref).abs().max() <= 1e-5
    with pytest.raises(UserError, match="3 classes"):
        export_folder(tmp_path / "clf.pth", tmp_path / "bad", label_names=["a", "b"])
    # its encoder alone
    enc = export_folder(tmp_path / "clf.pth", tmp_path / "enc", kind="encoder")
    assert enc["kind"] == "encoder" and enc["license"] == DEFAULT_LICENSE


def test_pth_destination_keeps_the_file_layout(tmp_path):
    cfg = tiny_cfg(IMAGE)
    enc, _ = pretrain_checkpoint(cfg, tmp_path / "p.pth")
    layout, meta = export(tmp_path / "p.pth", tmp_path / "encoder.pth")
    assert layout == "file" and meta["format"] == "bridle-encoder-v1"
    x = _x(cfg)
    with torch.no_grad():
        assert torch.equal(bridle.load_encoder(str(tmp_path / "encoder.pth"))(x), enc(x))
    with pytest.raises(UserError, match="encoder only"):
        export(tmp_path / "p.pth", tmp_path / "t.pth", kind="tokenizer")


def test_export_run_of_a_demo(tmp_path):
    """The demos' export: OUTPUT_DIR/export/{encoder,tokenizer}, the report's numbers in the
    card, the commands that use the folders (hear-validator for an audio encoder)."""
    pytest.importorskip("bridle_audio")
    from bridle.interop.hub import export_run, print_export

    cfg = tiny_cfg(AUDIO)
    final = tmp_path / "pretrain" / "3_encoder" / "model_final.pth"
    final.parent.mkdir(parents=True)
    pretrain_checkpoint(cfg, final, tokenizer=True)
    report = {"results": {"linear_probe": {"bridle": {"test_top1": 0.75}}}}
    entry = export_run(str(tmp_path), str(final), str(final), report)
    assert entry["encoder"] == "export/encoder" and entry["tokenizer"] == "export/tokenizer"
    assert not [k for k in entry if k.endswith("_error")]
    cmds = "\n".join(entry["commands"])
    assert "python -m bridle_audio.hear_validate --model" in cmds and "tools/tokenize_dataset.py --weights" in cmds
    assert "timm.create_model" in cmds and "tools/extract_features.py --weights" in cmds
    card = (tmp_path / "export" / "encoder" / "README.md").read_text()
    assert "results.linear_probe.bridle.test_top1 | 0.75" in card
    assert bridle.load_tokenizer(str(tmp_path / "export" / "tokenizer"))(torch.randn(16000)).shape == (14, 2)
    broken = export_run(str(tmp_path / "b"), str(tmp_path / "missing.pth"))
    assert "encoder_error" in broken and "encoder" not in broken
    print_export(entry)


def test_audio_classifier_label_names_from_the_plugin(tmp_path):
    pytest.importorskip("bridle_audio")
    csv = tmp_path / "class_labels_indices.csv"
    csv.write_text("index,mid,display_name\n0,/m/0,zero\n1,/m/1,one\n")
    cfg = tiny_cfg(AUDIO, "DATASETS.AUDIO.LABEL_CSV", str(csv))
    clf = classifier_checkpoint(cfg, tmp_path / "clf.pth", num_classes=2)
    conf = export_folder(tmp_path / "clf.pth", tmp_path / "clf")
    model, names = bridle.load_classifier(str(tmp_path / "clf"))
    assert conf["label_names"] == names == ["zero", "one"] and conf["timm"]["kwargs"]["in_chans"] == 1
    x = torch.randn(2, 64, 32)
    with torch.no_grad():
        assert torch.equal(model(x), clf(x))
