"""Real audio end to end through the one entry point: prepare -> BRIDLE schedule ->
fine-tune -> mAP, then the exported encoder fine-tuned at a shorter input (pos-embed resize)."""

import json
import os
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TOOLS = os.path.join(REPO, "tools")


def _run(args, timeout=300):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable] + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{args[0]} failed:\n{r.stdout[-2500:]}\n{r.stderr[-2500:]}"
    return r.stdout + r.stderr


def test_prepare_pretrain_finetune_map(clean_corpus, tmp_path):
    data = str(tmp_path / "data")
    _run(
        [
            os.path.join(TOOLS, "prepare_audio.py"),
            "folder",
            "--input",
            clean_corpus,
            "--output",
            data,
            "--labels-from-subdirs",
            "--eval-fraction",
            "0.3",
            "--workers",
            "1",
        ]
    )
    with open(os.path.join(data, "class_labels_indices.csv")) as f:
        num_classes = sum(1 for _ in f) - 1
    tiny = os.path.join(REPO, "configs", "audio", "tiny_pretrain.yaml")
    pre = str(tmp_path / "pretrain")
    log = _run(
        [
            os.path.join(TOOLS, "train_net.py"),
            "--config-file",
            tiny,
            "OUTPUT_DIR",
            pre,
            "DATASETS.AUDIO.TRAIN_MANIFEST",
            os.path.join(data, "train.json"),
            "DATASETS.AUDIO.LABEL_CSV",
            os.path.join(data, "class_labels_indices.csv"),
            "SOLVER.BATCH_SIZE_PER_GPU",
            "4",
            "SOLVER.MAX_ITER",
            "4",
            "SOLVER.CHECKPOINT_PERIOD",
            "2",
        ]
    )
    assert "Schedule finished" in log
    weights = os.path.join(pre, "2_encoder", "model_final.pth")
    ft = str(tmp_path / "finetune")
    common = [
        "DATASETS.TRAIN",
        "audioset_manifest",
        "DATASETS.TEST",
        "audioset_manifest",
        "DATASETS.AUDIO.TRAIN_MANIFEST",
        os.path.join(data, "train.json"),
        "DATASETS.AUDIO.TEST_MANIFEST",
        os.path.join(data, "eval.json"),
        "DATASETS.AUDIO.LABEL_CSV",
        os.path.join(data, "class_labels_indices.csv"),
        "MODEL.HEAD.NUM_CLASSES",
        str(num_classes),
        "MODEL.HEAD.LOSS",
        "bce",
        "TEST.EVALUATORS",
        "['map']",
        "DATALOADER.SAMPLER_TRAIN",
        "WeightedSampler",
        "INPUT.AUDIO.MIXUP_PROB",
        "0.5",
        "INPUT.AUDIO.FREQ_MASK",
        "4",
        "INPUT.AUDIO.TIME_MASK",
        "8",
        "SOLVER.BATCH_SIZE_PER_GPU",
        "4",
        "SOLVER.MAX_ITER",
        "6",
    ]
    log = _run(
        [
            os.path.join(TOOLS, "train_net.py"),
            "--config-file",
            tiny,
            "TRAINER.NAME",
            "finetune",
            "OUTPUT_DIR",
            ft,
            "MODEL.WEIGHTS",
            weights,
        ]
        + common
    )
    with open(os.path.join(ft, "final_results.json")) as f:
        res = json.load(f)
    m = res["last"]["test"]["mAP"]
    print(f"end-to-end tiny audio mAP: {m:.4f}")
    assert 0.0 <= m <= 1.0 and "mAP" in log

    # Export the pretrained encoder and fine-tune it at half the frames (64x... -> grid 4x2).
    enc = str(tmp_path / "encoder.pth")
    _run([os.path.join(TOOLS, "export_encoder.py"), weights, enc])
    short = common + [
        "INPUT.AUDIO.TARGET_LENGTH",
        "64",
        "MODEL.PATCH_EMBED.INPUT_SIZE",
        "[64, 32]",
        "MODEL.DECODER.WINDOW_SIZE",
        "[2, 2]",
    ]
    log = _run(
        [
            os.path.join(TOOLS, "train_net.py"),
            "--config-file",
            tiny,
            "TRAINER.NAME",
            "finetune",
            "OUTPUT_DIR",
            str(tmp_path / "ft_short"),
            "MODEL.WEIGHTS",
            enc,
            "SOLVER.MAX_ITER",
            "2",
        ]
        + short
    )
    assert os.path.exists(os.path.join(tmp_path, "ft_short", "final_results.json"))
    exported = torch.load(enc, weights_only=True)
    assert exported["meta"]["grid_size"] == [8, 2] or tuple(exported["meta"]["grid_size"]) == (8, 2)
