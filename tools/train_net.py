#!/usr/bin/env python
"""The one entry point: pretraining schedules, single phases, fine-tuning, linear probing,
evaluation.

    python tools/train_net.py --config-file configs/audio/pretrain_rq.yaml [KEY VALUE ...]
    python tools/train_net.py --config-file ... --num-gpus 8
    torchrun --nproc-per-node 8 --nnodes 2 ... tools/train_net.py --config-file ...
    python tools/train_net.py --list
"""
import logging
import sys

from bridle.config import get_cfg
from bridle.engine import default_argument_parser, default_setup, launch
from bridle.registry import TRAINER, format_registries

logger = logging.getLogger("bridle")


def setup(args):
    cfg = get_cfg()
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    trainer_cls = TRAINER.get(cfg.TRAINER.NAME)
    if args.eval_only:
        results = trainer_cls.eval_only(cfg)
        logger.info(f"Evaluation results: {results}")
        return results
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def invoke_main() -> None:
    parser = default_argument_parser()
    args = parser.parse_args()
    flags = [o for o in (args.opts or []) if o.startswith("--")]
    if flags:
        parser.error(f"flags {flags} must come before the KEY VALUE config overrides")
    if args.list:
        get_cfg()  # loads every plugin
        import bridle.trainers  # noqa: F401  (core trainers register on import)

        print(format_registries())
        return
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()
    sys.exit(0)
