"""Comparing two training states (checkpoints, state dicts, optimizer states) in the resume tests."""

import torch


def state_diffs(a, b, prefix=""):
    """{key: max |a - b|} over every tensor of two nested states; the keys, shapes and every
    non-tensor value must be equal."""
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape, (prefix, a.shape, b.shape)
        return {prefix: (a.double() - b.double()).abs().max().item() if a.numel() else 0.0}
    out = {}
    if isinstance(a, dict):
        assert set(a) == set(b), (prefix, set(a) ^ set(b))
        for k in a:
            out.update(state_diffs(a[k], b[k], f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), prefix
        for i, (x, y) in enumerate(zip(a, b)):
            out.update(state_diffs(x, y, f"{prefix}[{i}]"))
    else:
        assert a == b, (prefix, a, b)
    return out


def max_state_diff(a, b) -> float:
    """The largest |a - b| over every tensor of two nested states (see :func:`state_diffs`)."""
    return max(state_diffs(a, b).values(), default=0.0)
