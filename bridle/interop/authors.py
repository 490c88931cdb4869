"""Checkpoints of the authors' public BRIDLE code (github HoangNguyenM/bridle) <-> ours: the
key mapping, the position-table layouts and what is reported rather than guessed are described
in docs/interop.md."""

import math
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple

import torch

from bridle.modeling.pos_embed import sincos_pos_embed
from bridle.modeling.swin_v2_block import MAX_LOGIT_SCALE
from bridle.protocols import StateDict

AUTHORS_ENCODER_PREFIX = "encoder_decoder."
LAYOUTS = ("same", "transposed")

# (ours, theirs) name prefixes, tried in order; a prefix ending without "." is a whole name.
_PREFIXES = [
    ("encoder.cls_token", "encoder_decoder.cls_token"),
    ("encoder.pos_embed", "encoder_decoder.pos_embed"),
    ("encoder.patch_embed.", "encoder_decoder.patch_embed."),
    ("encoder.blocks.", "encoder_decoder.blocks."),
    ("encoder.norm.", "encoder_decoder.norm."),
    ("decoder.embed.", "encoder_decoder.decoder_embed."),
    ("decoder.mask_token", "encoder_decoder.mask_token"),
    ("decoder.pos_embed", "encoder_decoder.decoder_pos_embed"),
    ("decoder.norm.", "encoder_decoder.decoder_norm."),
    ("decoder.head.", "encoder_decoder.decoder_pred."),
    ("tokenizer.vit.", "tokenizer."),
    ("tokenizer.proj.0.", "tokenizer.quantize_layer.0."),
    ("tokenizer.proj.2.", "tokenizer.quantize_layer.2."),
    ("tokenizer.proj.weight", "tokenizer.cold_start_encoder.weight"),  # cold start (no bias)
    ("tokenizer.patch_embed.", "tokenizer.patch_embed."),  # cold start
    ("tokenizer.pos_embed", "tokenizer.pos_embed"),  # cold start
    ("estimator.embed.", "tokenizer.estimator_embed."),
    ("estimator.pos_embed", "tokenizer.estimator_pos_embed"),
    ("estimator.blocks.", "tokenizer.estimator_blocks."),
    ("estimator.norm.", "tokenizer.estimator_norm."),
    ("estimator.head.", "tokenizer.estimator_pred."),
]
# inside one of our swin_v2 decoder blocks -> inside their Swin-v2 block
_SWIN_RENAMES = [
    ("attn.logit_scale", "attn.tau"),
    ("attn.position_bias.mlp.", "attn.meta_mlp.model."),
    ("mlp.fc1.", "mlp.model.0."),
    ("mlp.fc2.", "mlp.model.2."),
]
# ours without a cls row where theirs has one (a zero row first)
_CLS_ROW_ADDED = ("decoder.pos_embed", "tokenizer.pos_embed")
_DECODER_BLOCK = re.compile(r"^decoder\.blocks\.(\d+)\.(block\.)?(.*)$")
_CODEBOOK = "tokenizer.quantizer.codebook"
_INITIALIZED = "tokenizer.quantizer.initialized"
# Our training bookkeeping (usage windows): no counterpart, and not weights; a converted model
# keeps the template's (empty) values without a report line.
_BOOKKEEPING = re.compile(r"^(tokenizer\.quantizer\.window|target_usage)\.(ring|counts|age|slot)$")


@dataclass
class ConversionReport:
    """What a conversion wrote, what it could not map, and how it read each position table."""

    converted: List[str] = field(default_factory=list)  # target keys written
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (source or target key, why)
    missing: List[str] = field(default_factory=list)  # target keys the source has no value for
    pos_tables: Dict[str, str] = field(default_factory=dict)  # key -> layout found, action

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} tensors"]
        lines += [f"  position table {k}: {v}" for k, v in self.pos_tables.items()]
        if self.missing:
            lines.append(
                f"  no source for {len(self.missing)} tensors (they keep the model's init): {_short(self.missing)}"
            )
        for k, why in self.skipped:
            lines.append(f"  skipped {k}: {why}")
        return "\n".join(lines)


def _short(keys: Sequence[str], n: int = 6) -> str:
    return ", ".join(list(keys)[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


# ---------------------------------------------------------------------------- position tables
def authors_sincos_table(
    dim: int, grid: Sequence[int], layout: str = "transposed", cls_token: bool = False
) -> torch.Tensor:
    """The fixed sin-cos table ``[N (+1), dim]`` the authors' code builds for tokens laid out
    row-major over the 2-D patch ``grid``: "same" is the table of ``grid`` itself (their square
    grids), "transposed" the table of the swapped grid (their non-square grids)."""
    if layout not in LAYOUTS:
        raise ValueError(f"Table layout must be one of {LAYOUTS}; got '{layout}'.")
    grid = tuple(int(g) for g in grid)
    if layout == "transposed":
        if len(grid) != 2:
            raise ValueError(f"The 'transposed' table layout is for 2-D patch grids; got grid {list(grid)}.")
        grid = grid[::-1]
    return sincos_pos_embed(dim, grid, cls_token=cls_token)


def detect_table_layout(table: torch.Tensor, grid: Sequence[int], has_cls: bool, atol: float = 1e-5) -> str:
    """How a stored table ``[1, N (+1), D]`` relates to ``grid``: "same" (our sin-cos table of
    the grid, = the authors' for square grids), "transposed" (the authors' table of a
    non-square 2-D grid) or "other" (learned, or another grid)."""
    t = table.reshape(-1, table.shape[-1]).float()
    if has_cls:
        t = t[1:]
    n = math.prod(int(g) for g in grid)
    if t.shape[0] != n:
        return "other"
    candidates = ["same"] + (["transposed"] if len(grid) == 2 and grid[0] != grid[1] else [])
    for layout in candidates:
        dim = t.shape[-1]
        ref = authors_sincos_table(dim, grid, layout) if layout == "transposed" else sincos_pos_embed(dim, grid)
        if torch.allclose(t, ref, atol=atol):
            return layout
    return "other"


def _is_pos_table(key: str) -> bool:
    return key.endswith("pos_embed")


def _has_cls_row_ours(key: str) -> bool:
    return key in ("encoder.pos_embed", "tokenizer.vit.pos_embed")


# ---------------------------------------------------------------------------- names
def _swin_blocks(keys) -> Set[int]:
    """Indices of our decoder blocks that are swin_v2 blocks."""
    out = set()
    for k in keys:
        m = _DECODER_BLOCK.match(k)
        if m and m.group(3) == "attn.logit_scale":
            out.add(int(m.group(1)))
    return out


def authors_name(key: str, swin_blocks: Set[int] = frozenset()) -> Optional[str]:
    """Their name of our state-dict key ``key`` (None: no counterpart, or a special case such
    as the codebook, handled by the converters)."""
    m = _DECODER_BLOCK.match(key)
    if m:
        i, rest = int(m.group(1)), m.group(3)
        if i in swin_blocks:
            for ours, theirs in _SWIN_RENAMES:
                if rest.startswith(ours):
                    rest = theirs + rest[len(ours) :]
                    break
        return f"encoder_decoder.decoder_blocks.{i}.{rest}"
    for ours, theirs in _PREFIXES:
        if ours.endswith(".") and key.startswith(ours):
            return theirs + key[len(ours) :]
        if key == ours:
            return theirs
    return None


# ---------------------------------------------------------------------------- values
def _theirs_to_ours_value(key: str, value: torch.Tensor) -> torch.Tensor:
    if key in _CLS_ROW_ADDED:
        return value[:, 1:]
    if key.endswith("attn.logit_scale"):
        # their temperature tau (clamped >= 0.01 in their forward) -> our log(1 / tau)
        return -torch.log(value.double().clamp(min=math.exp(-MAX_LOGIT_SCALE))).to(value.dtype)
    return value


def _ours_to_theirs_value(key: str, value: torch.Tensor) -> torch.Tensor:
    if key in _CLS_ROW_ADDED:
        return torch.cat([torch.zeros_like(value[:, :1]), value], dim=1)
    if key.endswith("attn.logit_scale"):
        return torch.exp(-value.double().clamp(max=MAX_LOGIT_SCALE)).to(value.dtype)
    return value


def _their_codebook(state: StateDict, num_levels: int) -> Tuple[Optional[torch.Tensor], List[str], bool]:
    """Their codebooks as ours ``[L, K, c]``, the keys read, and whether they were initialised."""
    rq = [f"tokenizer.quantizer.codebooks.{l}.weight" for l in range(num_levels)]
    if all(k in state for k in rq):
        book = torch.stack([state[k][:-1] for k in rq])  # drop the padding row
        flags = [state.get(f"tokenizer.quantizer.codebooks.{l}.initted") for l in range(num_levels)]
        initialised = all(f is None or bool(f.reshape(-1)[0]) for f in flags)
        return book, rq, initialised
    vq = "tokenizer.quantizer.embedding.weight"
    if num_levels == 1 and vq in state:
        flag = state.get("tokenizer.quantizer.embedding.initted")
        return state[vq][None], [vq], flag is None or bool(flag.reshape(-1)[0])
    return None, [], False


# ---------------------------------------------------------------------------- conversions
def from_authors(
    theirs: StateDict, template: StateDict, grid: Sequence[int], pos_embed: str = "keep"
) -> Tuple[StateDict, ConversionReport]:
    """Our state dict from theirs. ``template`` is our model's ``state_dict()`` (names and
    shapes to fill); tensors without a source, or whose shape does not fit, are left out (the
    model keeps its own) and reported. ``grid`` is the patch grid (for the position tables)."""
    if pos_embed not in ("keep", "regenerate"):
        raise ValueError(f"pos_embed must be 'keep' or 'regenerate'; got '{pos_embed}'.")
    if not any(k.startswith(AUTHORS_ENCODER_PREFIX) for k in theirs):
        raise KeyError(
            f"Not an authors' BRIDLE checkpoint: no '{AUTHORS_ENCODER_PREFIX}*' key "
            f"(keys start with {sorted({k.split('.')[0] for k in theirs})[:5]})."
        )
    report = ConversionReport()
    out: StateDict = {}
    swin = _swin_blocks(template)
    used: Set[str] = set()
    for key, ref in template.items():
        if key == _CODEBOOK:
            book, read, initialised = _their_codebook(theirs, ref.shape[0])
            used.update(read)
            used.update(k for k in theirs if k.startswith("tokenizer.quantizer.") and k.endswith("initted"))
            if book is None:
                report.missing.append(key)
            elif book.shape != ref.shape:
                report.skipped.append((key, f"their codebooks {tuple(book.shape)} vs ours {tuple(ref.shape)}"))
            else:
                out[key] = book.to(ref.dtype)
                if _INITIALIZED in template:
                    out[_INITIALIZED] = torch.tensor(initialised)
                report.converted.append(key)
            continue
        if key == _INITIALIZED:
            continue  # set with the codebook
        if _BOOKKEEPING.match(key):
            out[key] = ref.clone()
            continue
        name = authors_name(key, swin)
        if name is None or name not in theirs:
            report.missing.append(key)
            continue
        used.add(name)
        value = _theirs_to_ours_value(key, theirs[name])
        if _is_pos_table(key):
            value = _convert_table(key, value, grid, pos_embed, report, target="ours")
        if tuple(value.shape) != tuple(ref.shape):
            why = f"shape {tuple(theirs[name].shape)} does not fit our {key} {tuple(ref.shape)}"
            report.skipped.append((name, why))
            continue
        out[key] = value.to(ref.dtype).clone()
        report.converted.append(key)
    for k in sorted(set(theirs) - used):
        ema = k.startswith("tokenizer.quantizer.")
        why = "their EMA statistics (ours keep none)" if ema else "no counterpart in our model"
        report.skipped.append((k, why))
    return out, report


def to_authors(
    ours: StateDict, grid: Sequence[int], pos_embed: str = "keep", layout: str = "transposed", quantizer: str = "rq"
) -> Tuple[StateDict, ConversionReport]:
    """Their state dict (``{"model": ...}`` content) from ours. ``layout`` is the authors'
    table layout written by ``pos_embed="regenerate"`` (see :func:`authors_sincos_table`);
    ``quantizer`` ("rq" / "vq", our MODEL.QUANTIZER.NAME) picks their codebook layout."""
    if quantizer not in ("rq", "vq"):
        raise ValueError(f"quantizer must be 'rq' or 'vq' (MODEL.QUANTIZER.NAME); got '{quantizer}'.")
    if pos_embed not in ("keep", "regenerate"):
        raise ValueError(f"pos_embed must be 'keep' or 'regenerate'; got '{pos_embed}'.")
    if not any(k.startswith("encoder.") for k in ours):
        raise KeyError(
            "Not a BRIDLE model state: no 'encoder.*' key (convert a full checkpoint, not an exported encoder)."
        )
    report = ConversionReport()
    out: StateDict = {}
    swin = _swin_blocks(ours)
    for key, value in ours.items():
        if key == _CODEBOOK:
            initialised = bool(ours.get(_INITIALIZED, torch.tensor(True)))
            if quantizer == "vq":
                p = "tokenizer.quantizer."
                out[p + "embedding.weight"] = value[0].clone()
                out[p + "embedding.cluster_size"] = torch.ones(value.shape[1], dtype=value.dtype)
                out[p + "embedding.embed_avg"] = value[0].clone()
                out[p + "embedding.initted"] = torch.tensor([float(initialised)])
                report.converted.append(key)
                continue
            for l in range(value.shape[0]):
                p = f"tokenizer.quantizer.codebooks.{l}."
                out[p + "weight"] = torch.cat([value[l], torch.zeros_like(value[l, :1])])  # + padding row
                # EMA state consistent with the codes (their update divides embed_ema by the counts)
                out[p + "cluster_size_ema"] = torch.ones(value.shape[1], dtype=value.dtype)
                out[p + "embed_ema"] = value[l].clone()
                out[p + "initted"] = torch.tensor([float(initialised)])
            report.converted.append(key)
            continue
        if key == _INITIALIZED or _BOOKKEEPING.match(key):
            continue
        name = authors_name(key, swin)
        if name is None:
            report.skipped.append((key, "no counterpart in the authors' model"))
            continue
        v = value
        if _is_pos_table(key):
            v = _convert_table(key, v, grid, pos_embed, report, target="theirs", layout=layout)
        out[name] = _ours_to_theirs_value(key, v).clone()
        report.converted.append(name)
    return out, report


def _convert_table(
    key: str,
    value: torch.Tensor,
    grid,
    pos_embed: str,
    report: ConversionReport,
    target: str,
    layout: str = "transposed",
) -> torch.Tensor:
    """``value`` is our ``key``'s table (our rows: a cls row only for the ViTs); keep it or
    write the target side's own table, and record what the table was."""
    has_cls = _has_cls_row_ours(key)
    found = detect_table_layout(value, grid, has_cls)
    if pos_embed == "keep":
        report.pos_tables[key] = f"{found}; kept as stored"
        return value
    dim = value.shape[-1]
    if target == "ours":
        table = sincos_pos_embed(dim, grid, cls_token=has_cls)
        action = "replaced by our sin-cos table of the grid"
    else:
        square = not (len(grid) == 2 and grid[0] != grid[1])
        table = authors_sincos_table(dim, grid, "same" if square else layout, cls_token=has_cls)
        action = f"replaced by the authors' table ({layout} layout)"
    report.pos_tables[key] = f"{found}; {action}"
    return table[None].to(value.dtype)
