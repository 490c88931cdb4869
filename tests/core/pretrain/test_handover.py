"""Phase hand-over rules when a single phase starts from MODEL.WEIGHTS."""

import os

import pytest
import torch

from bridle.checkpoint import export_encoder
from bridle.config import get_cfg
from bridle.registry import TRAINER
from toy_plugin import toy_opts


def run_phase(tmp_path, name, trainer, weights="", cold=False, iters=2):
    cfg = get_cfg()
    cfg.merge_from_list(
        toy_opts(
            str(tmp_path / name),
            **{
                "TRAINER.NAME": trainer,
                "MODEL.WEIGHTS": weights,
                "MODEL.TOKENIZER.COLD_START": cold,
                "SOLVER.MAX_ITER": iters,
            },
        )
    )
    torch.manual_seed(0)
    t = TRAINER.get(trainer)(cfg)
    t.resume_or_load(resume=False)
    t.train()
    return t, os.path.join(cfg.OUTPUT_DIR, "model_final.pth")


def state(path):
    return torch.load(path, weights_only=True)["model"]


@pytest.fixture
def cold_ckpt(toy_plugin, tmp_path):
    return run_phase(tmp_path, "cold", "encoder", cold=True)[1]


def test_tokenizer_phase_alone_takes_encoder_and_fresh_codebooks(cold_ckpt, tmp_path):
    t, _ = run_phase(tmp_path, "tok", "tokenizer", weights=cold_ckpt, iters=1)
    before = state(cold_ckpt)
    model = t.model_without_ddp.state_dict()
    # the frozen teacher is exactly the previous encoder
    for k, v in before.items():
        if k.startswith("encoder."):
            assert torch.equal(v, model[k]), k
    # the tokenizer is a new ViT tokenizer (the checkpoint's was cold-start)
    assert any(k.startswith("tokenizer.vit.") for k in model)


def test_encoder_phase_refuses_a_checkpoint_without_trained_tokenizer(cold_ckpt, tmp_path):
    with pytest.raises(ValueError, match="needs a trained tokenizer"):
        run_phase(tmp_path, "enc2", "encoder", weights=cold_ckpt)


def load_only(tmp_path, name, trainer, weights, cold=False, **extra):
    """A phase trainer after the hand-over from ``weights``, before any training step."""
    cfg = get_cfg()
    cfg.merge_from_list(
        toy_opts(
            str(tmp_path / name),
            **{"TRAINER.NAME": trainer, "MODEL.WEIGHTS": weights, "MODEL.TOKENIZER.COLD_START": cold, **extra},
        )
    )
    torch.manual_seed(1)  # other fresh weights than the runs that wrote the checkpoints
    t = TRAINER.get(trainer)(cfg)
    t.resume_or_load(resume=False)
    return t.model_without_ddp.state_dict()


def test_encoder_phase_takes_trained_tokenizer_decoder_and_estimator(cold_ckpt, tmp_path):
    _, tok = run_phase(tmp_path, "tok", "tokenizer", weights=cold_ckpt, iters=2)
    prev = state(tok)
    cold = state(cold_ckpt)
    # the tokenizer phase kept the cold phase's decoder (unused there) in its checkpoint
    for k in cold:
        if k.startswith("decoder."):
            assert torch.equal(cold[k], prev[k]), k
    loaded = load_only(tmp_path, "enc2_load", "encoder", tok)
    window = "tokenizer.quantizer.window."
    assert prev[window + "age"].sum() > 0  # the tokenizer phase's usage window is in its checkpoint
    for k in prev:
        if k.startswith(window):  # training bookkeeping: a new phase starts it afresh
            assert loaded[k].sum() == 0, k
        elif k.startswith(("decoder.", "tokenizer.", "estimator.")):
            assert torch.equal(prev[k], loaded[k]), k  # decoder carried, T and TE kept
    t, _ = run_phase(tmp_path, "enc2", "encoder", weights=tok, iters=1)
    after = state(os.path.join(tmp_path, "enc2", "model_final.pth"))
    for k in prev:
        if k.startswith(("tokenizer.", "estimator.")) and not k.startswith(window):
            assert torch.equal(prev[k], after[k]), k  # frozen and taken over bitwise
    assert any(not torch.equal(prev[k], after[k]) for k in prev if k.startswith("decoder."))  # it trained


def test_a_later_tokenizer_phase_warm_starts_the_trained_estimator(cold_ckpt, tmp_path):
    _, tok = run_phase(tmp_path, "tok", "tokenizer", weights=cold_ckpt, iters=2)
    _, enc2 = run_phase(tmp_path, "enc2", "encoder", weights=tok, iters=1)
    tok_state, enc2_state = state(tok), state(enc2)
    est = [k for k in tok_state if k.startswith("estimator.")]
    assert est and all(torch.equal(tok_state[k], enc2_state[k]) for k in est)
    loaded = load_only(tmp_path, "tok2_load", "tokenizer", enc2)
    assert all(torch.equal(tok_state[k], loaded[k]) for k in est)


def test_decoder_head_reinitialised_only_when_its_shape_changes(cold_ckpt, tmp_path):
    # the tokenizer phase uses 24 codes per level (its codebooks are fresh anyway) where the cold
    # phase's decoder predicted 16: the decoder is carried on, all but its head
    _, tok = run_phase_opts(tmp_path, "tok24", "tokenizer", cold_ckpt, **{"MODEL.QUANTIZER.CODEBOOK_SIZE": 24})
    cold, prev = state(cold_ckpt), state(tok)
    assert cold["decoder.head.weight"].shape[0] == 2 * 16 and prev["decoder.head.weight"].shape[0] == 2 * 24
    loaded = load_only(tmp_path, "enc24", "encoder", tok, **{"MODEL.QUANTIZER.CODEBOOK_SIZE": 24})
    for k in cold:
        if k.startswith("decoder.") and not k.startswith("decoder.head."):
            assert torch.equal(cold[k], loaded[k]), k
    assert torch.equal(prev["decoder.head.weight"], loaded["decoder.head.weight"])  # same shape now: carried


def test_carry_decoder_off_starts_a_fresh_decoder(cold_ckpt, tmp_path):
    _, tok = run_phase(tmp_path, "tok", "tokenizer", weights=cold_ckpt, iters=1)
    prev = state(tok)
    loaded = load_only(tmp_path, "enc_fresh", "encoder", tok, **{"PRETRAIN.CARRY_DECODER": False})
    assert not torch.equal(prev["decoder.embed.weight"], loaded["decoder.embed.weight"])
    assert torch.equal(prev["estimator.embed.weight"], loaded["estimator.embed.weight"])


def run_phase_opts(tmp_path, name, trainer, weights, iters=1, **extra):
    cfg = get_cfg()
    cfg.merge_from_list(
        toy_opts(
            str(tmp_path / name),
            **{"TRAINER.NAME": trainer, "MODEL.WEIGHTS": weights, "SOLVER.MAX_ITER": iters, **extra},
        )
    )
    torch.manual_seed(0)
    t = TRAINER.get(trainer)(cfg)
    t.resume_or_load(resume=False)
    t.train()
    return t, os.path.join(cfg.OUTPUT_DIR, "model_final.pth")


def test_exported_encoder_starts_a_cold_phase(cold_ckpt, tmp_path):
    exported = str(tmp_path / "encoder.pth")
    export_encoder(cold_ckpt, exported)
    t, _ = run_phase(tmp_path, "from_export", "encoder", weights=exported, cold=True, iters=1)
    src = state(cold_ckpt)
    # the phase trained one step from the exported weights: shapes match and loading happened
    loaded = t.model_without_ddp.encoder.state_dict()
    assert set(loaded) == {k[len("encoder.") :] for k in src if k.startswith("encoder.")}


def test_mismatched_weights_are_a_clear_error(cold_ckpt, tmp_path):
    cfg = get_cfg()
    cfg.merge_from_list(
        toy_opts(
            str(tmp_path / "bad"),
            **{"TRAINER.NAME": "tokenizer", "MODEL.WEIGHTS": cold_ckpt, "MODEL.ENCODER.EMBED_DIM": 48},
        )
    )
    t = TRAINER.get("tokenizer")(cfg)
    with pytest.raises(ValueError, match="does not fit"):
        t.resume_or_load(resume=False)


def test_schedule_carries_decoder_and_estimator_between_phases(toy_plugin, tmp_path):
    """The schedule's checkpoints: 2_encoder keeps 1_tokenizer's estimator bitwise, and its
    decoder started from 0_encoder_cold's (kept unchanged through the tokenizer phase)."""
    cfg = get_cfg()
    cfg.merge_from_list(
        toy_opts(
            str(tmp_path / "sched"),
            **{
                "TRAINER.NAME": "schedule",
                "PRETRAIN.SCHEDULE": '["encoder_cold", "tokenizer", "encoder"]',
                "SOLVER.MAX_ITER": 2,
            },
        )
    )
    torch.manual_seed(0)
    TRAINER.get("schedule")(cfg).train()
    ck = {
        k: state(os.path.join(cfg.OUTPUT_DIR, k, "model_final.pth"))
        for k in ("0_encoder_cold", "1_tokenizer", "2_encoder")
    }
    est = [k for k in ck["1_tokenizer"] if k.startswith("estimator.")]
    assert all(torch.equal(ck["1_tokenizer"][k], ck["2_encoder"][k]) for k in est)
    assert not all(torch.equal(ck["0_encoder_cold"][k], ck["1_tokenizer"][k]) for k in est)  # it trained there
    dec = [k for k in ck["0_encoder_cold"] if k.startswith("decoder.")]
    assert all(torch.equal(ck["0_encoder_cold"][k], ck["1_tokenizer"][k]) for k in dec)


def test_joint_phase_after_encoder_cold_and_after_a_tokenizer_phase(cold_ckpt, tmp_path):
    cold = state(cold_ckpt)
    # after encoder_cold: E and D carried, the cold-start tokenizer does not fit -> fresh ViT tokenizer
    loaded = load_only(tmp_path, "joint_cold", "joint", cold_ckpt)
    for k in cold:
        if k.startswith(("encoder.", "decoder.")):
            assert torch.equal(cold[k], loaded[k]), k
    assert any(k.startswith("tokenizer.vit.") for k in loaded) and not any(k.startswith("tokenizer.vit.") for k in cold)
    run_phase(tmp_path, "joint_run", "joint", weights=cold_ckpt, iters=2)
    # after a tokenizer phase: every network, the trained tokenizer's codebooks included
    _, tok = run_phase(tmp_path, "tok", "tokenizer", weights=cold_ckpt, iters=1)
    prev = state(tok)
    loaded = load_only(tmp_path, "joint_tok", "joint", tok)
    for k in prev:
        if not k.startswith("tokenizer.quantizer.window."):  # bookkeeping: a new phase starts it afresh
            assert torch.equal(prev[k], loaded[k]), k


def _one_phase_cfg(out: str, **extra):
    """A one-phase (encoder_cold) toy schedule of 2 iterations in ``out``."""
    cfg = get_cfg()
    cfg.merge_from_list(
        toy_opts(
            out, **{"TRAINER.NAME": "schedule", "PRETRAIN.SCHEDULE": "['encoder_cold']", "SOLVER.MAX_ITER": 2, **extra}
        )
    )
    return cfg


def test_resume_refuses_a_finished_phase_that_ran_another_config(toy_plugin, tmp_path):
    """--resume reuses finished phases only when they ran the config of this run."""
    from bridle.trainers.schedule import ScheduleRunner, stale_finished_phases

    def cfg_of(**extra):
        return _one_phase_cfg(str(tmp_path / "out"), **extra)

    runner = TRAINER.get("schedule")(cfg_of())
    runner.train()
    assert stale_finished_phases(cfg_of()) == []
    assert stale_finished_phases(cfg_of(**{"PRETRAIN.PHASES.ENCODER.MAX_ITER": 9})) == []  # another phase's
    same = ScheduleRunner(cfg_of(**{"LOG_PERIOD": 7}))  # an ignored key: reused
    same.resume_or_load(resume=True)
    assert same.train()["final_checkpoint"].endswith("model_final.pth")
    changed = cfg_of(**{"SOLVER.BASE_LR": 0.5})
    stale = stale_finished_phases(changed)
    assert len(stale) == 1 and stale[0][0].endswith("0_encoder_cold")
    assert any(c.startswith("PRETRAIN.PHASES.ENCODER_COLD") or c.startswith("SOLVER.BASE_LR") for c in stale[0][1])
    other = ScheduleRunner(changed)
    other.resume_or_load(resume=True)
    with pytest.raises(ValueError, match=r"finished with another config.*BASE_LR"):
        other.train()


def test_resume_accepts_a_phase_saved_before_a_key_existed(toy_plugin, tmp_path):
    """A finished phase whose saved config.yaml lacks a key (written by an older Bridle, before
    the key was added) is reused while the key is at its default, and refused once it is not."""
    import yaml

    from bridle.trainers.schedule import stale_finished_phases

    def cfg_of(**extra):
        return _one_phase_cfg(str(tmp_path / "out"), **extra)

    TRAINER.get("schedule")(cfg_of()).train()
    saved = tmp_path / "out" / "0_encoder_cold" / "config.yaml"
    old = yaml.safe_load(saved.read_text())
    del old["PRETRAIN"]["NUM_MASKS"]  # as a config written before PRETRAIN.NUM_MASKS existed
    saved.write_text(yaml.safe_dump(old))
    assert stale_finished_phases(cfg_of()) == []
    stale = stale_finished_phases(cfg_of(**{"PRETRAIN.NUM_MASKS": 2}))
    assert len(stale) == 1 and stale[0][1] == ["PRETRAIN.NUM_MASKS: '<absent>' -> 2"]


def test_resume_accepts_a_run_directory_copied_elsewhere(toy_plugin, tmp_path):
    """A later phase's MODEL.WEIGHTS is the previous phase's checkpoint inside the run
    directory: a copied (or moved) run still resumes, its finished phases reused."""
    import shutil

    from bridle.trainers.schedule import ScheduleRunner, stale_finished_phases

    def cfg_of(out, **extra):
        cfg = get_cfg()
        cfg.merge_from_list(
            toy_opts(
                str(out),
                **{
                    "TRAINER.NAME": "schedule",
                    "PRETRAIN.SCHEDULE": "['encoder_cold', 'tokenizer']",
                    "SOLVER.MAX_ITER": 2,
                    **extra,
                },
            )
        )
        return cfg

    TRAINER.get("schedule")(cfg_of(tmp_path / "a")).train()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert stale_finished_phases(cfg_of(tmp_path / "b")) == []
    final = tmp_path / "b" / "1_tokenizer" / "model_final.pth"
    before = os.path.getmtime(final)
    runner = ScheduleRunner(cfg_of(tmp_path / "b"))
    runner.resume_or_load(resume=True)
    runner.train()
    assert os.path.getmtime(final) == before  # reused, not retrained
    # ... but a phase that started from weights outside the run directory still counts as changed
    stale = stale_finished_phases(cfg_of(tmp_path / "b", **{"MODEL.WEIGHTS": str(tmp_path / "elsewhere.pth")}))
    assert stale and any(c.startswith("MODEL.WEIGHTS") for c in stale[0][1])


def test_iteration_two_may_use_a_larger_quantizer_than_the_cold_start(toy_plugin, tmp_path):
    """PRETRAIN.PHASES.{TOKENIZER,ENCODER}.OPTS give the trained tokenizer more levels and codes
    than the cold start's: the tokenizer phase builds it fresh, the encoder phase loads it and
    re-initialises only the decoder's head (its logits grew)."""
    from bridle.trainers.pretrain import checkpoint_state

    bigger = "['MODEL.QUANTIZER.NUM_LEVELS','3','MODEL.QUANTIZER.CODEBOOK_SIZE','24']"
    cfg = get_cfg()
    cfg.merge_from_list(
        toy_opts(
            str(tmp_path / "out"),
            **{
                "TRAINER.NAME": "schedule",
                "PRETRAIN.SCHEDULE": "['encoder_cold','tokenizer','encoder']",
                "SOLVER.MAX_ITER": 2,
                "PRETRAIN.PHASES.TOKENIZER.OPTS": bigger,
                "PRETRAIN.PHASES.ENCODER.OPTS": bigger,
            },
        )
    )
    TRAINER.get("schedule")(cfg).train()
    cold = checkpoint_state(str(tmp_path / "out" / "0_encoder_cold" / "model_final.pth"))
    final = checkpoint_state(str(tmp_path / "out" / "2_encoder" / "model_final.pth"))
    tok = checkpoint_state(str(tmp_path / "out" / "1_tokenizer" / "model_final.pth"))
    assert final["tokenizer.quantizer.codebook"].shape[:2] == (3, 24)
    assert cold["tokenizer.quantizer.codebook"].shape[:2] != (3, 24)
    for k in final:  # the encoder carried from iteration 1, the tokenizer from the tokenizer phase
        if k.startswith("tokenizer.") and not k.startswith("tokenizer.quantizer.window."):
            assert torch.equal(final[k], tok[k]), k
    head = [k for k in final if k.startswith("decoder.") and final[k].shape != cold.get(k, final[k]).shape]
    assert head and all(final[k].shape[0] == 3 * 24 for k in head)
