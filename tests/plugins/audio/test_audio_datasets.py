"""bridle_audio.prepare (tools/prepare_audio.py) -> manifests -> registered datasets, corrupt files, fbank cache."""

import csv
import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from bridle.data import skip_none_collate
from bridle.registry import DATASET
from bridle_audio.manifest import read_label_csv, read_manifest

# ESC-50-like metadata for the fake checkout: (source clip key, fold, target, category).
ESC_ROWS = [
    ("speech0", 1, 0, "dog"),
    ("speech1", 1, 1, "rooster"),
    ("speech2", 2, 0, "dog"),
    ("speech3", 2, 1, "rooster"),
    ("tone:c262_44k", 3, 2, "pig"),
    ("tone:noise_32k", 3, 0, "dog"),
    ("speech4", 4, 1, "rooster"),
    ("tone:a440_48k_stereo", 4, 2, "pig"),
    ("speech5", 5, 2, "pig"),
    ("corrupt", 5, 0, "dog"),
]


def _source(corpus, key):
    if key == "corrupt":
        return corpus.corrupt[0]
    if key.startswith("tone:"):
        return corpus.tones[key[5:]]
    return corpus.speech[int(key[len("speech") :])]


@pytest.fixture(scope="module")
def prepared_folder(audio_corpus, prepare_audio, tmp_path_factory):
    """prepare_audio folder (labels from sub-dirs, 30% eval) over the corpus incl. broken files."""
    out = tmp_path_factory.mktemp("prepared_folder")
    prepare_audio.main(
        [
            "folder",
            "--input",
            audio_corpus.root,
            "--output",
            str(out),
            "--labels-from-subdirs",
            "--eval-fraction",
            "0.3",
            "--workers",
            "2",
        ]
    )
    return str(out)


@pytest.fixture(scope="module")
def esc50_root(audio_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("ESC-50-master")
    os.makedirs(root / "audio")
    os.makedirs(root / "meta")
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for i, (key, fold, target, cat) in enumerate(ESC_ROWS):
            name = f"{fold}-{1000 + i}-A-{target}.wav"
            shutil.copyfile(_source(audio_corpus, key), root / "audio" / name)
            w.writerow([name, fold, target, cat, "False", 1000 + i, "A"])
    return str(root)


def test_prepare_folder_writes_16k_mono_manifests_labels_weights(prepared_folder, audio_corpus):
    out = prepared_folder
    train, ev = read_manifest(os.path.join(out, "train.json")), read_manifest(os.path.join(out, "eval.json"))
    n_good = len(audio_corpus.good)
    assert len(train) + len(ev) == n_good and len(ev) >= 1 and len(train) >= 1
    mids, names = read_label_csv(os.path.join(out, "class_labels_indices.csv"))
    assert set(mids) >= {"speech", "tone"} and "broken" in mids  # the class folders
    for e in train + ev:
        path = os.path.join(out, e["wav"])
        info = sf.info(path)
        assert (info.samplerate, info.channels) == (16000, 1), path
        assert e["labels"] == e["wav"].split("/")[1]
    # One weight per clip, 1 / class frequency.
    weights = np.loadtxt(os.path.join(out, "train_weight.csv"))
    counts = {m: sum(e["labels"] == m for e in train) for m in mids}
    assert np.allclose(weights, [1.0 / counts[e["labels"]] for e in train])
    failed = open(os.path.join(out, "failed.txt")).read().splitlines()
    assert sorted(line.split("\t")[0] for line in failed) == sorted(audio_corpus.corrupt)
    # The converted clip keeps its duration: 1.5 s at 16 kHz.
    a440 = [e for e in train + ev if "a440_48k_stereo" in e["wav"]][0]
    assert sf.info(os.path.join(out, a440["wav"])).frames == 24000


def test_manifest_round_trip_through_the_dataset(prepared_folder, cfg_factory):
    cfg = cfg_factory()
    d = cfg.DATASETS.AUDIO
    d.TRAIN_MANIFEST = os.path.join(prepared_folder, "train.json")
    d.TEST_MANIFEST = os.path.join(prepared_folder, "eval.json")
    d.LABEL_CSV = os.path.join(prepared_folder, "class_labels_indices.csv")
    mids, _ = read_label_csv(d.LABEL_CSV)
    train = DATASET.get("audioset_manifest")(cfg, "train", "eval")
    entries = read_manifest(d.TRAIN_MANIFEST)
    assert len(train) == len(entries) and train.num_classes == len(mids)
    for i in range(len(train)):
        item = train[i]
        assert item["input"].shape == (1024, 128)
        assert item["label"].dtype == torch.float32 and item["label"].shape == (len(mids),)
        assert item["label"].nonzero().flatten().tolist() == [mids.index(entries[i]["labels"])]
        assert int(item["index"]) == i
    test = DATASET.get("audioset_manifest")(cfg, "test", "eval")
    batch = skip_none_collate([test[i] for i in range(len(test))])
    assert batch["input"].shape == (len(test), 1024, 128) and int(batch["num_skipped"]) == 0
    # Weights fall back to label frequencies when no weight file is configured.
    assert torch.allclose(
        train.sample_weights(),
        torch.as_tensor(np.loadtxt(os.path.join(prepared_folder, "train_weight.csv")), dtype=torch.float64),
    )


def test_bare_list_manifest_and_weight_file(prepared_folder, cfg_factory, tmp_path):
    entries = read_manifest(os.path.join(prepared_folder, "train.json"))
    bare = tmp_path / "bare.json"
    bare.write_text(
        json.dumps([{"wav": os.path.join(prepared_folder, e["wav"]), "labels": e["labels"]} for e in entries])
    )
    weights = tmp_path / "w.csv"
    weights.write_text("".join(f"{i + 1}\n" for i in range(len(entries))))
    cfg = cfg_factory()
    cfg.DATASETS.AUDIO.TRAIN_MANIFEST = str(bare)
    cfg.DATASETS.AUDIO.LABEL_CSV = os.path.join(prepared_folder, "class_labels_indices.csv")
    cfg.DATASETS.AUDIO.TRAIN_WEIGHTS = str(weights)
    ds = DATASET.get("audioset_manifest")(cfg, "train", "pretrain")
    assert len(ds) == len(entries)
    assert ds.sample_weights().tolist() == [float(i + 1) for i in range(len(entries))]
    weights.write_text("1\n2\n")
    with pytest.raises(ValueError, match="w.csv"):
        DATASET.get("audioset_manifest")(cfg, "train", "pretrain")


def test_prepare_esc50_then_esc50_dataset_folds(esc50_root, prepare_audio, cfg_factory, tmp_path):
    out = tmp_path / "esc50"
    prepare_audio.main(["esc50", "--input", esc50_root, "--output", str(out), "--workers", "1"])
    failed = (out / "failed.txt").read_text().splitlines()
    assert len(failed) == 1 and failed[0].startswith(os.path.join(esc50_root, "audio", "5-1009-A-0.wav"))
    with open(out / "meta" / "esc50.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(ESC_ROWS) - 1  # the corrupt row is dropped
    for r in rows:
        assert sf.info(str(out / "audio" / r["filename"])).samplerate == 16000
    # Per-fold manifests for the manifest dataset as well.
    fold1_eval = read_manifest(str(out / "esc50_fold1_eval.json"))
    assert [e["labels"] for e in fold1_eval] == ["dog", "rooster"]

    cfg = cfg_factory(TARGET_LENGTH=512)
    cfg.DATASETS.AUDIO.ESC50_ROOT = str(out)
    cfg.DATASETS.AUDIO.ESC50_FOLD = 2
    train = DATASET.get("esc50")(cfg, "train", "eval")
    test = DATASET.get("esc50")(cfg, "test", "eval")
    assert (len(train), len(test)) == (7, 2) and train.num_classes == test.num_classes == 50
    item = test[0]
    assert item["input"].shape == (512, 128)
    assert item["label"].dtype == torch.long and int(item["label"]) == 0
    assert [int(test[i]["label"]) for i in range(2)] == [0, 1]
    # The original (unprepared) checkout works as well; its corrupt clip is skipped and counted.
    cfg.DATASETS.AUDIO.ESC50_ROOT = esc50_root
    cfg.DATASETS.AUDIO.ESC50_FOLD = 5
    raw = DATASET.get("esc50")(cfg, "test", "eval")
    items = [raw[i] for i in range(len(raw))]
    assert sum(it is None for it in items) == 1 and raw.num_failed == 1
    with pytest.raises(ValueError, match="ESC50_FOLD"):
        cfg.DATASETS.AUDIO.ESC50_FOLD = 6
        DATASET.get("esc50")(cfg, "train", "eval")


def test_prepare_audioset_segments(audio_corpus, prepare_audio, cfg_factory, tmp_path):
    clips = tmp_path / "downloads"
    os.makedirs(clips)
    ids = {
        "--4gqARaEJE": audio_corpus.speech[0],
        "a_b-c_d-e_f": audio_corpus.speech[1],
        "Yz3ZJsbp0lk": audio_corpus.tones["a440_48k_stereo"],
        "0123456789A": audio_corpus.corrupt[0],
    }
    shutil.copyfile(ids["--4gqARaEJE"], clips / "Y--4gqARaEJE_30.000_40.000.wav")
    shutil.copyfile(ids["a_b-c_d-e_f"], clips / "a_b-c_d-e_f.wav")
    shutil.copyfile(ids["Yz3ZJsbp0lk"], clips / "Yz3ZJsbp0lk_0_10000.wav")
    shutil.copyfile(ids["0123456789A"], clips / "0123456789A.wav")
    labels = tmp_path / "class_labels_indices.csv"
    labels.write_text(
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/05zppz,"Male speech, man speaking"\n'
        '2,/m/07pjjrj,"Sine wave"\n'
    )
    seg = tmp_path / "balanced_train_segments.csv"
    seg.write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        "# num_ytids=5, num_segs=5, num_unique_labels=3, num_positive_labels=6\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        '--4gqARaEJE, 30.000, 40.000, "/m/09x0r,/m/05zppz"\n'
        'a_b-c_d-e_f, 0.000, 10.000, "/m/09x0r"\n'
        'Yz3ZJsbp0lk, 0.000, 10.000, "/m/07pjjrj,/m/unknown"\n'
        '0123456789A, 0.000, 10.000, "/m/09x0r"\n'
        'NOTDOWNLOAD, 0.000, 10.000, "/m/09x0r"\n'
    )
    ev = tmp_path / "eval_segments.csv"
    ev.write_text('# YTID, start_seconds, end_seconds, positive_labels\na_b-c_d-e_f, 0.000, 10.000, "/m/09x0r"\n')
    out = tmp_path / "as"
    prepare_audio.main(
        [
            "audioset",
            "--segments",
            str(seg),
            str(ev),
            "--clips",
            str(clips),
            "--label-csv",
            str(labels),
            "--output",
            str(out),
            "--workers",
            "2",
            "--format",
            "flac",
            "--merge",
            "train_all=balanced_train_segments,eval_segments",
        ]
    )
    train = read_manifest(str(out / "balanced_train_segments.json"))
    assert [(e["wav"], e["labels"]) for e in train] == [
        ("audio/--4gqARaEJE.flac", "/m/09x0r,/m/05zppz"),
        ("audio/a_b-c_d-e_f.flac", "/m/09x0r"),
        ("audio/Yz3ZJsbp0lk.flac", "/m/07pjjrj"),
    ]
    assert len(read_manifest(str(out / "train_all.json"))) == 4
    assert (out / "missing.txt").read_text().split() == ["balanced_train_segments", "NOTDOWNLOAD"]
    assert (out / "failed.txt").read_text().startswith(str(clips / "0123456789A.wav"))
    weights = np.loadtxt(out / "balanced_train_segments_weight.csv")
    assert np.allclose(weights, [1 / 2 + 1, 1 / 2, 1.0])  # speech x2, male speech x1, sine x1
    mids, names = read_label_csv(str(out / "class_labels_indices.csv"))
    assert names[1] == "Male speech, man speaking"

    cfg = cfg_factory()
    cfg.DATASETS.AUDIO.TRAIN_MANIFEST = str(out / "balanced_train_segments.json")
    cfg.DATASETS.AUDIO.LABEL_CSV = str(out / "class_labels_indices.csv")
    cfg.DATASETS.AUDIO.TRAIN_WEIGHTS = str(out / "balanced_train_segments_weight.csv")
    ds = DATASET.get("audioset_manifest")(cfg, "train", "finetune")
    assert ds[0]["label"].shape == (3,)
    assert torch.allclose(ds.sample_weights(), torch.tensor(weights, dtype=torch.float64))


def test_corrupt_clips_are_skipped_and_counted(audio_corpus, cfg_factory, tmp_path, caplog):
    manifest = tmp_path / "m.json"
    paths = [audio_corpus.speech[0], *audio_corpus.corrupt, str(tmp_path / "gone.wav"), audio_corpus.speech[1]]
    manifest.write_text(json.dumps({"data": [{"wav": p, "labels": "a"} for p in paths]}))
    labels = tmp_path / "labels.csv"
    labels.write_text("index,mid,display_name\n0,a,A\n")
    cfg = cfg_factory(MIXUP_PROB=0.0)
    cfg.DATASETS.AUDIO.TRAIN_MANIFEST = str(manifest)
    cfg.DATASETS.AUDIO.LABEL_CSV = str(labels)
    for mode in ("pretrain", "finetune", "eval"):
        ds = DATASET.get("audioset_manifest")(cfg, "train", mode)
        with caplog.at_level(logging.WARNING):
            items = [ds[i] for i in range(len(ds))]
        assert [it is None for it in items] == [False, True, True, True, True, False]
        assert ds.num_failed == 4 and ds.failed_keys == paths[1:5]
        assert audio_corpus.corrupt[0] in caplog.text
        caplog.clear()
        batch = skip_none_collate(items)
        assert int(batch["num_skipped"]) == 4 and batch["input"].shape[0] == 2
    # A broken mixup partner is counted too, and the item is still returned (unmixed).
    cfg.INPUT.AUDIO.MIXUP_PROB = 1.0
    ds = DATASET.get("audioset_manifest")(cfg, "train", "finetune")
    torch.manual_seed(0)
    for _ in range(6):
        assert ds[0] is not None
    assert ds.num_failed >= 1 and set(ds.failed_keys) <= set(paths[1:5])
    # Through a DataLoader with workers: the run goes on, the batch reports the skips.
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, collate_fn=skip_none_collate)
    assert sorted(int(b["num_skipped"]) for b in loader) == [2, 2]


def test_audio_folder_dataset(audio_corpus, cfg_factory):
    cfg = cfg_factory()
    cfg.DATASETS.AUDIO.FOLDER_ROOT = audio_corpus.root
    ds = DATASET.get("audio_folder")(cfg, "train", "pretrain")
    assert len(ds) == len(audio_corpus.good) + len(audio_corpus.corrupt)
    assert ds.num_classes == 0 and torch.all(ds.sample_weights() == 1)
    paths = [ds.path(i) for i in range(len(ds))]
    assert paths == sorted(paths) and set(audio_corpus.good) <= set(paths)
    item = ds[paths.index(audio_corpus.speech[0])]
    assert set(item) == {"input", "index"} and item["input"].shape == (1024, 128)
    assert ds[paths.index(audio_corpus.corrupt[0])] is None
    with pytest.raises(ValueError, match="unlabeled"):
        DATASET.get("audio_folder")(cfg, "train", "finetune")
    cfg.DATASETS.AUDIO.FOLDER_EXTENSIONS = [".oga"]
    if audio_corpus.system:
        oga = DATASET.get("audio_folder")(cfg, "train", "pretrain")
        assert len(oga) >= 1 and all(oga.path(i).endswith(".oga") for i in range(len(oga)))


def test_fbank_cache_gives_identical_items(audio_corpus, cfg_factory, tmp_path):
    paths = audio_corpus.speech[:3] + [audio_corpus.tones["sweep_long_22k"]]
    plain = AudioClipDatasetFor(cfg_factory(), paths)
    cfg = cfg_factory()
    cfg.DATASETS.AUDIO.FBANK_CACHE_DIR = str(tmp_path / "cache")
    cached = AudioClipDatasetFor(cfg, paths)
    for i in range(len(paths)):
        first, second = cached[i]["input"], cached[i]["input"]  # computed + stored, then loaded
        assert os.path.isfile(cached.cache_path(i))
        assert torch.equal(first, plain[i]["input"]) and torch.equal(second, first)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == len(paths)


def AudioClipDatasetFor(cfg, paths):
    from bridle_audio import AudioClipDataset

    return AudioClipDataset(cfg, paths, "eval")


def test_clear_errors_name_keys_and_files(cfg_factory, tmp_path):
    cfg = cfg_factory()
    with pytest.raises(ValueError, match="DATASETS.AUDIO.TRAIN_MANIFEST"):
        DATASET.get("audioset_manifest")(cfg, "train", "pretrain")
    m = tmp_path / "m.json"
    m.write_text(json.dumps({"data": [{"wav": "x.wav", "labels": "/m/nope"}]}))
    labels = tmp_path / "labels.csv"
    labels.write_text("index,mid,display_name\n0,/m/yes,Yes\n")
    cfg.DATASETS.AUDIO.TRAIN_MANIFEST = str(m)
    with pytest.raises(ValueError, match="LABEL_CSV"):
        DATASET.get("audioset_manifest")(cfg, "train", "finetune")
    cfg.DATASETS.AUDIO.LABEL_CSV = str(labels)
    with pytest.raises(ValueError, match=r"m\.json.*/m/nope"):
        DATASET.get("audioset_manifest")(cfg, "train", "finetune")
    m.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match=r"m\.json"):
        DATASET.get("audioset_manifest")(cfg, "train", "finetune")
    with pytest.raises(ValueError, match="mode"):
        DATASET.get("audioset_manifest")(cfg, "train", "training")
    with pytest.raises(ValueError, match="split"):
        DATASET.get("audioset_manifest")(cfg, "eval", "eval")


def test_prepare_cli_runs_as_a_script(repo_root, clean_corpus, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo_root, os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "cli"
    res = subprocess.run(
        [
            sys.executable,
            os.path.join(repo_root, "tools", "prepare_audio.py"),
            "folder",
            "--input",
            os.path.join(clean_corpus, "tone"),
            "--output",
            str(out),
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "0 unreadable" in res.stdout
    assert len(read_manifest(str(out / "train.json"))) == len(os.listdir(os.path.join(clean_corpus, "tone")))
