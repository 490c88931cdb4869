"""Export a Bridle checkpoint as a self-describing FOLDER (library side of tools/export_encoder.py
and tools/export_tokenizer.py): ``model.safetensors`` (weights only, no pickle), ``config.yaml``
(the Bridle config that rebuilds it), ``config.json`` (architecture, input, timm kwargs, label
names or quantizer) and a generated model card ``README.md``. The layout is described in
:mod:`bridle.checkpoint.folder`; every Bridle loader reads the folder like a checkpoint file.

Kinds: an ``encoder`` (from a pretraining checkpoint, an exported encoder or a classifier), a
``classifier`` (from a fine-tuning / linear-probe checkpoint: encoder + fc_norm + head, with the
label names) and a ``tokenizer`` (the tokenizer of a pretraining checkpoint: its backbone,
projection and quantizer codebooks).

timm: Bridle's ViT uses timm's parameter names and timm's token layout (cls first, the position
table covering the cls row, ``timm/models/vision_transformer.py``: ``class_token=True``,
``no_embed_class=False``), and a 2-D strided-conv patch embedding like timm's ``PatchEmbed``,
so the weights load into ``timm.create_model(config["timm"]["model_name"],
**config["timm"]["kwargs"])`` unchanged. An encoder's kwargs set ``num_classes=0,
global_pool="avg", fc_norm=False``: ``model(x)`` is then the mean of the normed patch tokens
(what tools/extract_features.py computes) and ``model.forward_features(x)`` the tokens Bridle's
encoder returns. A classifier's set ``global_pool="avg"`` (timm's fc_norm after the mean of the
un-normed patch tokens, as Bridle's EncoderClassifier). 3-D patch embeddings (patches spanning frames) and
BatchNorm linear probes have no timm equivalent (``timm`` is null).
"""

import json
import logging
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from bridle.checkpoint.folder import (
    CARD_FILE,
    CLASSIFIER_OWN,
    CONFIG_JSON,
    CONFIG_YAML,
    FOLDER_FORMAT,
    KINDS,
    TOKENIZER_PREFIX,
    WEIGHTS_FILE,
)
from bridle.errors import UserError

logger = logging.getLogger(__name__)

#: License field of the card when none is given (Hugging Face's "other": terms not stated).
DEFAULT_LICENSE = "other"
_METRIC_WORDS = ("loss", "top1", "top5", "acc", "map", "auc", "cur", "perplexity", "usage")


# ----------------------------------------------------------------------------- weights
def _head_state(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(CLASSIFIER_OWN)}


def _tokenizer_state(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k[len(TOKENIZER_PREFIX) :]: v for k, v in state.items() if k.startswith(TOKENIZER_PREFIX)}


def detect_kind(ckpt: dict) -> str:
    """``classifier`` when the checkpoint has a head (``head.*``) next to its encoder, else
    ``encoder``; a folder keeps its own kind (a tokenizer is only exported when asked)."""
    from bridle.checkpoint import model_state_of

    export = ckpt.get("export") or {}
    if export.get("kind") in KINDS:
        return export["kind"]
    state = model_state_of(ckpt)
    return "classifier" if any(k.startswith("head.") for k in state) else "encoder"


def _plain(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Contiguous CPU copies (safetensors refuses shared or strided storage)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


# ----------------------------------------------------------------------------- config.json
def timm_spec(cfg, kind: str, embed_dim: int, depth: int, num_heads: int, adapter, has_bn: bool = False):
    """``{"model_name", "kwargs", "note"}`` for ``timm.create_model`` (None when timm has no
    equivalent: another backbone than "vit", a patch embedding that is not a 2-D conv, a
    BatchNorm head)."""
    from bridle.modeling.vit import VIT_SIZES

    p = cfg.MODEL.PATCH_EMBED
    in_chans = adapter.timm_in_chans()
    if str(cfg.MODEL.ENCODER.NAME) != "vit" or in_chans is None or len(p.INPUT_SIZE) != 2 or has_bn:
        return None
    kwargs: Dict[str, Any] = {
        "img_size": [int(s) for s in p.INPUT_SIZE],
        "patch_size": [int(s) for s in p.PATCH_SIZE],
        "in_chans": int(in_chans),
        "embed_dim": int(embed_dim),
        "depth": int(depth),
        "num_heads": int(num_heads),
        "mlp_ratio": float(getattr(cfg.MODEL.ENCODER, "MLP_RATIO", 4.0)),
        "qkv_bias": True,
        "class_token": True,
        "global_pool": "avg",
    }
    if kind == "classifier":
        kwargs["num_classes"] = int(cfg.MODEL.HEAD.NUM_CLASSES)
        note = "logits = model(x); fc_norm after the mean of the patch tokens, as Bridle's EncoderClassifier"
    else:
        kwargs.update({"num_classes": 0, "fc_norm": False})
        note = "model(x): mean of the normed patch tokens [B, D]; model.forward_features(x): tokens [B, 1 + N, D]"
    size = next((n for n, d in VIT_SIZES.items() if d == (embed_dim, depth, num_heads)), "base")
    return {"model_name": f"vit_{size}_patch16_224", "kwargs": kwargs, "note": note}


def _source_info(src: str, ckpt: dict) -> dict:
    info = {"checkpoint": os.path.basename(os.path.normpath(src))}
    it = ckpt.get("iteration")
    if isinstance(it, int):
        info["iteration"] = it
    return info


# ----------------------------------------------------------------------------- metrics
def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _last_metrics(path: str) -> Dict[str, float]:
    """The last value of every loss/accuracy-like key of a metrics.json (one JSON row a line)."""
    out: Dict[str, float] = {}
    try:
        with open(path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                for k, v in row.items() if isinstance(row, dict) else ():
                    if isinstance(v, (int, float)) and any(w in k.lower() for w in _METRIC_WORDS):
                        out[k] = float(v)
                if isinstance(row, dict) and isinstance(row.get("iteration"), int):
                    out["iteration"] = row["iteration"]
    except OSError:
        return {}
    return out


def _numbers(obj, prefix: str = "", depth: int = 0) -> Dict[str, float]:
    out: Dict[str, float] = {}
    if depth > 4:
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_numbers(v, f"{prefix}{k}.", depth + 1))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix[:-1]] = float(obj)
    return out


def _report_numbers(rep: dict) -> Dict[str, float]:
    keep = {k: rep[k] for k in ("results", "baseline") if k in rep}
    if isinstance(rep.get("tokenizer_usage"), dict):
        keep["tokenizer_usage"] = {
            f"level{u.get('level')}": {k: u.get(k) for k in ("used", "usage", "perplexity")}
            for u in rep["tokenizer_usage"].get("per_level", [])
        }
    return {k: v for k, v in _numbers(keep).items() if not k.endswith((".seconds", ".selected_iteration"))}


def run_metrics(src: str, report: Optional[dict] = None) -> Dict[str, Any]:
    """What the run that wrote ``src`` recorded, read from files next to it: ``metrics.json``
    (last values of its loss / accuracy keys), ``final_results.json`` (a downstream run's
    evaluations) and ``report.json`` (a demo's report, looked up to two folders above; or
    ``report``, a demo's report dict)."""
    if os.path.isdir(src):
        return {"report.json": _report_numbers(report)} if report else {}
    d = os.path.dirname(os.path.abspath(src))
    out: Dict[str, Any] = {}
    m = _last_metrics(os.path.join(d, "metrics.json"))
    if m:
        out["metrics.json"] = m
    fr = _read_json(os.path.join(d, "final_results.json"))
    if isinstance(fr, dict):
        sel = fr.get("val_selected") or fr.get("last") or {}
        out["final_results.json"] = _numbers(sel)
    if report:
        out["report.json"] = _report_numbers(report)
        return out
    for up in (d, os.path.dirname(d), os.path.dirname(os.path.dirname(d))):
        rep = _read_json(os.path.join(up, "report.json"))
        if isinstance(rep, dict):
            out["report.json"] = _report_numbers(rep)
            break
    return out


# ----------------------------------------------------------------------------- model card
def _training_lines(cfg, ckpt: dict) -> List[str]:
    from bridle.config import flatten_cfg

    trainer = str(cfg.TRAINER.NAME)
    lines = [f"- Trainer: `{trainer}`; seed {cfg.SEED}."]
    schedule = list(getattr(cfg.PRETRAIN, "SCHEDULE", []))
    if schedule and trainer not in ("finetune", "linear_probe"):
        parts = []
        for ph in schedule:
            node = cfg.PRETRAIN.PHASES.get(str(ph).upper())
            it = int(node.MAX_ITER) if node is not None and int(node.MAX_ITER) > 0 else None
            parts.append(f"{ph} ({it} iterations)" if it else str(ph))
        lines.append(
            "- BRIDLE schedule (arXiv 2502.02118, alternating tokenizer and encoder training): " + " → ".join(parts)
        )
    q = cfg.MODEL.QUANTIZER
    lines.append(
        f"- Quantizer (this config's): `{q.NAME}`, {q.NUM_LEVELS} level(s) × {q.CODEBOOK_SIZE} codes, "
        f"code dim {q.CODE_DIM}."
    )
    from bridle.config import get_cfg

    default = flatten_cfg(get_cfg().DATASETS, "DATASETS.")
    data = {
        k: v
        for k, v in flatten_cfg(cfg.DATASETS, "DATASETS.").items()
        if isinstance(v, str) and v and (k.count(".") == 1 or v != default.get(k))
    }
    if data:
        lines.append("- Data: " + ", ".join(f"`{k}` = `{v}`" for k, v in list(data.items())[:8]) + ".")
    it = ckpt.get("iteration")
    if isinstance(it, int):
        lines.append(f"- Iterations done when the checkpoint was written: {it}.")
    return lines


def _metric_lines(metrics: Dict[str, Any]) -> List[str]:
    if not metrics:
        return ["No metrics file (metrics.json, final_results.json, report.json) was found next to the checkpoint.", ""]
    lines = []
    for source, values in metrics.items():
        lines.append(f"From `{source}`:")
        lines.append("")
        lines.append("| metric | value |")
        lines.append("|---|---|")
        for k, v in list(values.items())[:40]:
            lines.append(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |")
        lines.append("")
    return lines


def model_card(conf: dict, cfg, ckpt: dict, adapter, metrics: Dict[str, Any], folder: str) -> str:
    """The folder's README.md (a model card with a YAML header, Hugging Face style)."""
    kind, modality = conf["kind"], conf["input"].get("modality", "generic")
    arch = (
        f"ViT (`{conf.get('backbone', 'vit')}`), width {conf['embed_dim']}, depth {conf['depth']}, "
        f"{conf['num_heads']} heads; input {conf['input_size']}, patches {conf['patch_size']}, "
        f"grid {conf['grid_size']} ({math.prod(conf['grid_size'])} tokens + cls); "
        f"{conf['num_parameters'] / 1e6:.2f} M parameters in this file"
    )
    if kind == "tokenizer":
        q = conf["quantizer"]
        arch = (
            ("cold-start (random frozen) tokenizer" if conf["cold_start"] else "trained tokenizer")
            + f" over input {conf['input_size']}, patches {conf['patch_size']}, grid {conf['grid_size']}; "
            f"quantizer `{q['name']}` {q['num_levels']} level(s) × {q['codebook_size']} codes; "
            f"{conf['num_parameters'] / 1e6:.2f} M parameters"
        )
    name = os.path.basename(os.path.normpath(folder))
    lines = [
        "---",
        f"license: {conf['license']}",
        "library_name: bridle",
        f"tags: [bridle, {modality}, self-supervised, {kind}]",
        "---",
        f"# {name}: a Bridle {modality} {kind}",
        "",
        f"Exported by Bridle {conf['bridle_version']} from `{conf['source']['checkpoint']}` "
        "(BRIDLE: masked discrete-token prediction with a tokenizer and an encoder trained in alternation, "
        "arXiv 2502.02118).",
        "",
        "## Model",
        "",
        f"- Kind: {kind}; modality: {modality}.",
        f"- Architecture: {arch}.",
    ]
    if kind == "classifier":
        names = conf.get("label_names") or []
        shown = ", ".join(names[:20]) + (" …" if len(names) > 20 else "")
        lines.append(f"- Classes ({len(names)}): {shown}.")
    lines += ["", "## Input", ""]
    for k, v in conf["input"].items():
        lines.append(f"- {k}: {v}")
    lines += ["", "## Training", ""] + _training_lines(cfg, ckpt)
    lines += ["", "## Metrics the run recorded", ""] + _metric_lines(metrics)
    lines += [
        "## How to use",
        "",
        "With Bridle (`pip install bridle` and its plugins):",
        "",
        "```python",
        "import bridle",
        "",
    ]
    if kind == "encoder":
        lines += [f'encoder = bridle.load_encoder("{name}")  # tokens = encoder(x): [B, 1 + N, D]']
    elif kind == "classifier":
        lines += [f'model, label_names = bridle.load_classifier("{name}")  # logits = model(x): [B, C]']
    else:
        lines += [f'tokenizer = bridle.load_tokenizer("{name}")  # codes = tokenizer(raw): [T, L] or [B, T, L]']
    lines += ["```", ""]
    if conf.get("timm"):
        t = conf["timm"]
        lines += [
            "With timm (no Bridle needed):",
            "",
            "```python",
            "import json, timm",
            "from safetensors.torch import load_file",
            "",
            f'cfg = json.load(open("{name}/config.json"))["timm"]',
            'model = timm.create_model(cfg["model_name"], pretrained=False, **cfg["kwargs"])',
            f'model.load_state_dict(load_file("{name}/model.safetensors"))',
            "```",
            "",
            f"{t['note']}.",
            "",
        ]
    extra = adapter.card_usage(name) if kind != "tokenizer" else ""
    if extra:
        lines += [extra.rstrip(), ""]
    if kind != "tokenizer":
        lines += [
            "Features of a whole dataset split: `python tools/extract_features.py --config-file DATA.yaml "
            f"--weights {name} --split test --out feats.npy`.",
            "",
        ]
    else:
        lines += [
            "Codes of a whole dataset split: `python tools/tokenize_dataset.py --weights "
            f"{name} --split train --output codes.npz`.",
            "",
        ]
    lines += [
        "## Files",
        "",
        f"- `{WEIGHTS_FILE}`: weights (safetensors, no pickle)",
        f"- `{CONFIG_YAML}`: the Bridle config that rebuilds the model",
        f"- `{CONFIG_JSON}`: architecture, input, timm kwargs"
        + (", label names" if kind == "classifier" else ", quantizer" if kind == "tokenizer" else ""),
        f"- `{CARD_FILE}`: this card",
        "",
        "## License",
        "",
        f"`{conf['license']}`"
        + (
            " (the default: no license was chosen at export, pass `--license`). "
            if conf["license"] == DEFAULT_LICENSE
            else ". "
        )
        + "The weights also carry the terms of the data they were trained on.",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- label names
def read_label_names(path: str) -> List[str]:
    """Label names from a file: a JSON list, a CSV ``index,mid,display_name`` (the last column,
    a header row skipped) or one name per line."""
    if not os.path.isfile(path):
        raise UserError(f"--label-names {path}: no such file (expected a JSON list, a CSV or one name per line).")
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        names = json.loads(text)
        if not isinstance(names, list):
            raise UserError(f"--label-names {path}: expected a JSON list of names.")
        return [str(n) for n in names]
    rows = [r for r in text.splitlines() if r.strip()]
    if path.endswith(".csv"):
        import csv

        parsed = list(csv.reader(rows))
        if parsed and parsed[0] and not parsed[0][0].strip().isdigit():
            parsed = parsed[1:]  # header
        return [r[-1].strip() for r in parsed if r]
    return [r.strip() for r in rows]


def dataset_label_names(cfg) -> Optional[List[str]]:
    """The label names the training dataset knows (a ``class_names`` or ``classes`` list), or
    None when it cannot be built here or has none."""
    try:
        from bridle.data.build import build_dataset

        ds = build_dataset(cfg, cfg.DATASETS.TRAIN, "train", "eval")
    except Exception as e:  # the data need not be on the exporting machine
        logger.info(f"Label names: the training dataset cannot be built here ({type(e).__name__}: {e}).")
        return None
    for attr in ("class_names", "classes"):
        names = getattr(ds, attr, None)
        if isinstance(names, (list, tuple)) and names:
            return [str(n) for n in names]
    return None


# ----------------------------------------------------------------------------- export
def _write_bytes(path: str, data: bytes, what: str) -> None:
    from bridle.checkpoint.io import _atomic_write

    _atomic_write(path, lambda f: f.write(data), what)


def _parts(ckpt: dict, src: str, kind: str, label_names: Optional[Sequence[str]]):
    """(state to write, cfg, conf fields) of one kind."""
    from bridle.checkpoint import cfg_from_checkpoint, encoder_export_parts, model_state_of
    from bridle.config import get_cfg

    text = ckpt.get("cfg") if isinstance(ckpt.get("cfg"), str) else ""
    if not text.strip():
        raise UserError(
            f"{src}: no stored config (key 'cfg'); a folder needs the config that rebuilds the model. "
            "Export from a checkpoint written by a Bridle trainer."
        )
    cfg = cfg_from_checkpoint(ckpt, get_cfg())
    fields: Dict[str, Any] = {}
    if kind == "tokenizer":
        tok = _tokenizer_state(model_state_of(ckpt))
        if not tok:
            raise UserError(
                f"{src}: holds no tokenizer (no 'tokenizer.*' weights); export it from a pretraining checkpoint."
            )
        cold = not any(k.startswith("vit.") for k in tok)
        cfg.MODEL.TOKENIZER.COLD_START = cold
        q = cfg.MODEL.QUANTIZER
        fields.update(
            cold_start=cold,
            quantizer={
                "name": str(q.NAME),
                "num_levels": int(q.NUM_LEVELS),
                "codebook_size": int(q.CODEBOOK_SIZE),
                "code_dim": int(q.CODE_DIM),
            },
        )
        from bridle.modeling.vit import vit_dims

        dims = vit_dims(cfg.MODEL.TOKENIZER) if not cold else (0, 0, 0)
        fields.update(embed_dim=dims[0], depth=dims[1], num_heads=dims[2])
        return _plain(tok), cfg, fields
    enc, _, meta = encoder_export_parts(ckpt, src)
    fields.update({k: meta[k] for k in ("embed_dim", "depth", "num_heads", "grid_size")})
    fields["backbone"] = meta.get("backbone", "vit")
    if kind == "encoder":
        return enc, cfg, fields
    head = _head_state(model_state_of(ckpt))
    if not head:
        raise UserError(f"{src}: holds no classifier head ('head.*'); export it as an encoder.")
    state = {k: v for k, v in enc.items() if not k.startswith("norm.")}  # never read by the pooling
    state.update(_plain(head))
    n = int(cfg.MODEL.HEAD.NUM_CLASSES)
    names = list(label_names) if label_names else ((ckpt.get("export") or {}).get("label_names"))
    if not names:
        from .adapters import input_adapter

        by_plugin = getattr(input_adapter(cfg), "label_names", None)  # optional: the plugin's label file
        names = by_plugin() if callable(by_plugin) else None
    if not names:
        names = dataset_label_names(cfg)
    if names and len(names) != n:
        raise UserError(f"label names: {len(names)} given but the classifier has {n} classes (MODEL.HEAD.NUM_CLASSES).")
    fields["label_names"] = list(names) if names else [f"class_{i}" for i in range(n)]
    fields["num_classes"] = n
    fields["has_batchnorm"] = any(k.startswith("bn.") for k in head)
    return state, cfg, fields


def export_folder(
    src: Union[str, os.PathLike],
    dst: Union[str, os.PathLike],
    kind: Optional[str] = None,
    license: str = DEFAULT_LICENSE,
    label_names: Optional[Sequence[str]] = None,
    report: Optional[dict] = None,
) -> dict:
    """Write the folder ``dst`` (created; files in it replaced) from ``src`` (a checkpoint file
    or a folder). ``kind``: "encoder" | "classifier" | "tokenizer" (default: classifier when
    ``src`` has a head, else encoder); ``report``: a demo's report dict for the card's metrics
    (else report.json is looked up next to ``src``). Returns the written config.json."""
    from safetensors.torch import save as st_save

    import bridle
    from bridle.checkpoint import load_checkpoint_file
    from bridle.checkpoint.io import atomic_write_text

    from .adapters import input_adapter

    src, dst = os.fspath(src), os.fspath(dst)
    ckpt = load_checkpoint_file(src)
    kind = kind or detect_kind(ckpt)
    if kind not in KINDS:
        raise UserError(f"kind '{kind}': expected one of {list(KINDS)}.")
    state, cfg, fields = _parts(ckpt, src, kind, label_names)
    adapter = input_adapter(cfg)
    p = cfg.MODEL.PATCH_EMBED
    grid = fields.get("grid_size") or [int(s) // int(q) for s, q in zip(p.INPUT_SIZE, p.PATCH_SIZE)]
    conf: Dict[str, Any] = {
        "format": FOLDER_FORMAT,
        "kind": kind,
        "bridle_version": bridle.__version__,
        "license": str(license or DEFAULT_LICENSE),
        "input_size": [int(s) for s in p.INPUT_SIZE],
        "patch_size": [int(s) for s in p.PATCH_SIZE],
        "in_chans": int(p.IN_CHANS),
        "patch_embed": str(p.NAME),
        "grid_size": [int(g) for g in grid],
        "input": adapter.describe(),
        "num_parameters": int(sum(v.numel() for v in state.values())),
    }
    conf.update({k: v for k, v in fields.items() if k != "grid_size"})
    conf["timm"] = (
        None
        if kind == "tokenizer"
        else timm_spec(
            cfg, kind, conf["embed_dim"], conf["depth"], conf["num_heads"], adapter, fields.get("has_batchnorm", False)
        )
    )
    conf["source"] = (ckpt.get("export") or {}).get("source") or _source_info(src, ckpt)
    metrics = run_metrics(src, report)
    conf["metrics"] = metrics
    os.makedirs(dst, exist_ok=True)
    _write_bytes(os.path.join(dst, WEIGHTS_FILE), st_save(state, metadata={"format": "pt"}), "weights")
    atomic_write_text(os.path.join(dst, CONFIG_YAML), cfg.dump(), "config")
    atomic_write_text(os.path.join(dst, CARD_FILE), model_card(conf, cfg, ckpt, adapter, metrics, dst), "model card")
    atomic_write_text(os.path.join(dst, CONFIG_JSON), json.dumps(conf, indent=2) + "\n", "config")  # last: marks done
    logger.info(f"Exported {kind} ({len(state)} tensors) from {src} to the folder {dst}")
    return conf


def export(
    src: Union[str, os.PathLike],
    dst: Union[str, os.PathLike],
    kind: Optional[str] = None,
    license: str = DEFAULT_LICENSE,
    label_names: Optional[Sequence[str]] = None,
    timm_path: Optional[str] = None,
) -> Tuple[str, dict]:
    """tools/export_encoder.py: a DST ending in ``.pth`` is written in the file layout
    (:func:`bridle.checkpoint.export_encoder`, encoders only), anything else as a folder.
    Returns (layout, meta or config.json)."""
    from bridle.checkpoint import export_encoder

    if os.fspath(dst).endswith(".pth"):
        if kind not in (None, "encoder"):
            raise UserError(f"{dst}: the .pth layout holds an encoder only; give a folder for a {kind}.")
        return "file", export_encoder(src, dst, timm_path=timm_path)
    if timm_path:
        raise UserError("--timm: a folder's model.safetensors is timm's layout already; --timm is for a .pth DST.")
    return "folder", export_folder(src, dst, kind=kind, license=license, label_names=label_names)


def export_main(argv=None, usage: str = "", tokenizer_only: bool = False) -> dict:
    """tools/export_encoder.py (and, with ``tokenizer_only``, tools/export_tokenizer.py): parse
    the command line, export, print a one-line JSON summary; returns the written config.json
    (a folder) or meta (a .pth). ``usage``: the tool's examples, shown before this module's
    description in --help."""
    import argparse

    from bridle.utils.logger import setup_logger

    p = argparse.ArgumentParser(
        description=(usage + "\n" if usage else "") + __doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("src", help="checkpoint (or exported folder) to read")
    p.add_argument("dst", help="folder to write" + ("" if tokenizer_only else " (or a .pth: the single-file layout)"))
    if not tokenizer_only:
        p.add_argument("--tokenizer", action="store_true", help="export the tokenizer of a pretraining checkpoint")
        p.add_argument("--encoder-only", action="store_true", help="export a classifier checkpoint's encoder only")
        p.add_argument(
            "--label-names", default="", metavar="FILE", help="classifier: JSON list, CSV or one name a line"
        )
        p.add_argument("--timm", default=None, metavar="DST_TIMM", help=".pth DST only: also write the timm state dict")
    p.add_argument(
        "--license", default=DEFAULT_LICENSE, help=f"license field of the model card (default: {DEFAULT_LICENSE})"
    )
    args = p.parse_args(argv)
    setup_logger("", 0, name="bridle")
    try:
        return _export_cli(args, tokenizer_only)
    except Exception as e:  # one line for a user error (as train_net.py); a bug keeps its traceback
        import sys

        from bridle.errors import EXIT_USER_ERROR, report_user_error, user_error_message

        msg = user_error_message(e)
        if msg is None:
            raise
        report_user_error(msg, e)
        sys.exit(EXIT_USER_ERROR)


def _export_cli(args, tokenizer_only: bool) -> dict:
    if tokenizer_only:
        kind, names, timm_path = "tokenizer", None, None
    else:
        kind = "tokenizer" if args.tokenizer else "encoder" if args.encoder_only else None
        names = read_label_names(args.label_names) if args.label_names else None
        timm_path = args.timm
    layout, out = export(args.src, args.dst, kind=kind, license=args.license, label_names=names, timm_path=timm_path)
    keys = ("kind", "input_size", "grid_size", "license")
    print(json.dumps(out if layout == "file" else {k: out[k] for k in keys}))
    return out


def usage_commands(folder: str, conf: dict, python: str = "python") -> List[str]:
    """Shell commands that use an exported folder (printed by the demos): the timm check,
    features / codes of its training data, and the plugin's own (e.g. a benchmark validator)."""
    from bridle.config import CfgNode

    from .adapters import input_adapter

    cmds: List[str] = []
    if conf.get("timm"):
        cmds.append(
            f'{python} -c "import json, timm; from safetensors.torch import load_file; '
            f"c = json.load(open('{folder}/config.json'))['timm']; "
            "m = timm.create_model(c['model_name'], pretrained=False, **c['kwargs']); "
            f"print(m.load_state_dict(load_file('{folder}/model.safetensors')))\""
        )
    if conf["kind"] == "tokenizer":
        cmds.append(
            f"{python} tools/tokenize_dataset.py --weights {folder} --split train "
            f"--output {os.path.dirname(folder)}/codes --format npy"
        )
    else:
        cmds.append(
            f"{python} tools/extract_features.py --weights {folder} --split train "
            f"--out {os.path.dirname(folder)}/features.npy"
        )
        try:
            with open(os.path.join(folder, CONFIG_YAML)) as f:
                cfg = CfgNode.load_cfg(f.read())
            adapter = input_adapter(cfg)
            extra = getattr(adapter, "commands", None)
            if callable(extra):
                cmds.extend(extra(folder))
        except Exception as e:  # a plugin missing here: its commands are left out
            logger.info(f"No plugin commands for {folder} ({type(e).__name__}: {e}).")
    return cmds


def export_run(out_dir: str, encoder_ckpt: str, tokenizer_ckpt: str = "", report: Optional[dict] = None) -> dict:
    """A demo's final encoder and tokenizer as folders ``OUT_DIR/export/{encoder,tokenizer}``
    (cards with ``report``'s numbers); returns report.json's ``export`` entry: the folders
    (relative to ``out_dir``) and the commands that use them, or the error that stopped it."""
    result: Dict[str, Any] = {}
    commands: List[str] = []
    for kind, src in (("encoder", encoder_ckpt), ("tokenizer", tokenizer_ckpt)):
        if not src:
            continue
        dst = os.path.join(out_dir, "export", kind)
        try:
            conf = export_folder(src, dst, kind=kind, report=report)
        except Exception as e:  # the report is still written; the error is in it and printed
            result[f"{kind}_error"] = f"{type(e).__name__}: {e}"
            logger.error(f"Export of the {kind} failed: {result[f'{kind}_error']}")
            continue
        result[kind] = os.path.relpath(dst, out_dir)
        commands.extend(usage_commands(dst, conf))
    result["commands"] = commands
    return result


def print_export(export_entry: dict) -> None:
    """The demos' closing lines: where the folders are and the commands that use them."""
    if not export_entry:
        return
    for kind in ("encoder", "tokenizer"):
        if export_entry.get(kind):
            print(f"  exported {kind}: {export_entry[kind]} (docs/using_a_trained_model.md)")
        if export_entry.get(f"{kind}_error"):
            print(f"  export of the {kind} FAILED: {export_entry[f'{kind}_error']}")
    for c in export_entry.get("commands", []):
        print(f"  $ {c}")
