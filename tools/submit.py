#!/usr/bin/env python
"""Submit ``tools/train_net.py`` to Slurm (or run it locally) through submitit, with requeue.

    python tools/submit.py --config-file configs/audio/pretrain_rq.yaml --nodes 4 --gpus-per-node 8 \\
        --partition learnfair --timeout 4320 OUTPUT_DIR /checkpoint/$USER/as2m_rq
    python tools/submit.py --config-file configs/image/tiny_pretrain.yaml --cluster local \\
        --gpus-per-node 0 --tasks-per-node 2 --wait OUTPUT_DIR out/local_job

Every task of the job is one training process: ``--nodes N`` x ``--tasks-per-node`` (default:
``--gpus-per-node``) ranks. ``torch.distributed`` is initialised from the job environment
(submitit's ``JobEnvironment``: SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID / SLURM_JOB_NODELIST
-> RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) through
:func:`bridle.engine.launch.export_dist_env` and the env:// path of ``launch``.

Time-out and preemption: Slurm sends ``SIGUSR2`` ``--signal-delay`` seconds before the time
limit (submitit's ``--signal=USR2@...``); SIGTERM / SIGINT / SIGUSR1 work too. The signal only
*requests* a stop (:func:`bridle.engine.signals.request_stop`): every rank finishes the current
step, the trainer writes a checkpoint and raises ``TrainingInterrupted``. Only then does rank 0
hand over to submitit, which calls :meth:`TrainJob.checkpoint` (the same job with ``--resume``),
stores it and requeues the job, so the requeue never races the checkpoint write. Rank 0 requeues
when *any* rank got the signal (the ranks agree on it after the stop: the signal need not reach
every rank before they agree to stop). The handler is installed before the task imports torch,
so a signal during start-up is not lost (the run stops at its first step boundary, or before
the first phase of a schedule). The requeued job resumes from the last checkpoint in OUTPUT_DIR
-- a schedule in the phase it was in.
A stop caused by SIGTERM alone (``scancel``, or a preemption that Slurm requeues itself) also
stores the ``--resume`` submission but does not requeue. After ``--max-requeue`` time-outs
submitit stops requeuing.
"""

import sys

from bridle.engine.submit import main

if __name__ == "__main__":
    sys.exit(main(epilog=__doc__))
