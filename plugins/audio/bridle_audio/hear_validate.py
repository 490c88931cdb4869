"""Run the HEAR 2021 validator (``hearvalidator`` 2021.0.6, hearvalidator/validate.py) on a Bridle
audio encoder without installing TensorFlow:

    python -m bridle_audio.hear_validate --model FOLDER [--device cpu]

is ``hear-validator bridle_audio.hear --model FOLDER``. The validator imports ``tensorflow`` at
module top only to recognise ``tf.Module`` models and to build TensorFlow test input for them; a
PyTorch module never reaches that code. When TensorFlow is not importable, a stand-in module that
defines ``Module`` is registered under that name for this process only, then the validator's own
``main`` runs unchanged. Install the validator with
``pip install --no-deps --ignore-requires-python hearvalidator==2021.0.6`` (``make setup`` does).
"""

import argparse
import importlib.util
import sys
import types


def _tensorflow_stand_in() -> types.ModuleType:
    mod = types.ModuleType("tensorflow")
    mod.__doc__ = "Stand-in for hearvalidator's isinstance(model, tf.Module) check (no TensorFlow installed)."
    mod.Module = type("Module", (), {})
    return mod


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("module", nargs="?", default="bridle_audio.hear", help="HEAR module (default bridle_audio.hear)")
    p.add_argument("--model", "-m", required=True, help="what bridle.load_encoder reads (an exported folder, a .pth)")
    p.add_argument("--device", "-d", default=None, help="cpu or cuda (default: cuda when available)")
    args = p.parse_args(argv)
    if importlib.util.find_spec("hearvalidator") is None:
        from bridle.errors import UserError

        raise UserError(
            "hearvalidator is not installed: pip install --no-deps --ignore-requires-python hearvalidator==2021.0.6"
        )
    if "tensorflow" not in sys.modules and importlib.util.find_spec("tensorflow") is None:
        sys.modules["tensorflow"] = _tensorflow_stand_in()
    from hearvalidator import validate

    saved = sys.argv
    sys.argv = ["hear-validator", args.module, "--model", args.model] + (
        ["--device", args.device] if args.device else []
    )
    try:
        validate.main()
    finally:
        sys.argv = saved


if __name__ == "__main__":
    from bridle.errors import EXIT_USER_ERROR, report_user_error, user_error_message

    try:
        main()
    except Exception as exc:  # a user error in one line (bridle/errors.py), anything else with its traceback
        msg = user_error_message(exc)
        if msg is None:
            raise
        report_user_error(msg, exc)
        sys.exit(EXIT_USER_ERROR)
