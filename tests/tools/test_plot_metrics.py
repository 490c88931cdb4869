import json
import os

import numpy as np
import pytest

from bridle.utils import plots as plot_metrics


def _write(path, records):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def _schedule(root):
    for k, phase in enumerate(["encoder_cold", "tokenizer", "encoder"]):
        recs = []
        for it in range(4, 40, 5):
            r = {"iteration": it, "lr": 1e-3 * (1 - it / 40), "total_loss": 3.0 - it / 20}
            if phase == "tokenizer":
                r.update(
                    {
                        "loss_cos": 0.5 - it / 100,
                        "quantizer/cur/l0": 0.5 + it / 100,
                        "quantizer/perplexity/l1": 10 + it,
                        "quantizer/dead_codes/l0": 40 - it,
                    }
                )
            else:
                r.update({"loss_mlm": 3.0 - it / 20, "mlm_acc": it / 50, "targets/cur/l1": 0.9})
            recs.append(r)
        _write(os.path.join(root, "pretrain", f"{k}_{phase}", "metrics.json"), recs)


def _downstream(root, name):
    recs = [{"iteration": it, "total_loss": 2.0 - it / 100, "lr": 1e-3} for it in range(10, 101, 10)]
    recs += [
        {"iteration": 50, "val/top1": 0.5, "test/top1": 0.45},
        {"iteration": 100, "val/top1": 0.6, "test/top1": 0.55},
    ]
    _write(os.path.join(root, name, "metrics.json"), recs)


def _image(path):
    import matplotlib.image as mpimg

    assert os.path.getsize(path) > 5000
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    return img


def test_plots_of_a_schedule_and_downstream_runs(tmp_path):
    root = str(tmp_path)
    _schedule(root)
    _downstream(root, "finetune_bridle")
    _downstream(root, "linear_probe_random_init")
    written = plot_metrics.main([root])
    names = sorted(os.path.basename(w) for w in written)
    assert names == ["downstream.png", "pretrain.png"]
    for w in written:
        img = _image(w)
        assert img.shape[0] > 200 and img.shape[1] > 600
        assert np.unique(img.reshape(-1, img.shape[-1]), axis=0).shape[0] > 20  # curves drawn, not blank
    schedules, downstream = plot_metrics.find_runs(root)
    assert [p for p, _ in schedules["pretrain"]] == ["0_encoder_cold", "1_tokenizer", "2_encoder"]
    assert sorted(downstream) == ["finetune_bridle", "linear_probe_random_init"]
    assert downstream["finetune_bridle"]["val/top1"] == [(50, 0.5), (100, 0.6)]


def test_repeated_iteration_keeps_the_last_value(tmp_path):
    p = str(tmp_path / "run" / "metrics.json")
    _write(p, [{"iteration": 5, "lr": 1.0}, {"iteration": 10, "lr": 2.0}, {"iteration": 10, "lr": 3.0}])
    assert plot_metrics.read_metrics(p)["lr"] == [(5, 1.0), (10, 3.0)]  # iterations done, as logged


def test_bad_input_names_the_file_and_line(tmp_path):
    p = tmp_path / "run" / "metrics.json"
    p.parent.mkdir()
    p.write_text('{"iteration": 0, "lr": 1}\nnot json\n')
    (p.parent / "tb").mkdir()
    with pytest.raises(ValueError, match=r"metrics.json, line 2"):
        plot_metrics.plot_output_dir(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        plot_metrics.plot_output_dir(str(tmp_path / "run" / "tb"))  # exists below, holds none


def test_online_probe_row_across_phases(tmp_path):
    """probe/* keys (TEST.ONLINE_PROBE) add a third row: the probe curve across the encoder phases."""
    root = str(tmp_path)
    _schedule(root)
    plain = plot_metrics.main([root, "--out", str(tmp_path / "plain")])[0]
    for k, phase in ((0, "encoder_cold"), (2, "encoder")):
        path = os.path.join(root, "pretrain", f"{k}_{phase}", "metrics.json")
        with open(path, "a") as f:
            for it in (10, 20, 39):
                rec = {"iteration": it, "probe/knn_top1": 0.3 + it / 100 + k / 10, "probe/linear_top1": 0.5 + it / 100}
                rec.update({"probe/masked_acc": 0.1 + it / 200, "probe/effective_rank": 5 + it / 4})
                rec["probe/perplexity/l0"] = 20.0
                f.write(json.dumps(rec) + "\n")
    with_probe = plot_metrics.main([root, "--out", str(tmp_path / "probe")])[0]
    a, b = _image(plain), _image(with_probe)
    assert b.shape[0] > a.shape[0] * 1.3 and b.shape[1] == a.shape[1]  # one more row of panels
    series = dict(plot_metrics.find_runs(root)[0]["pretrain"])["2_encoder"]
    assert [i for i, _ in series["probe/knn_top1"]] == [10, 20, 39]
    assert [v for _, v in series["probe/knn_top1"]] == pytest.approx([0.6, 0.7, 0.89])
