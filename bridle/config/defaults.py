"""Core defaults. Every key is declared here once, with a one-line comment.

Modality plugins add their own keys (under ``INPUT.<MODALITY>`` / ``DATASETS.<MODALITY>``)
through ``add_config(cfg)``. Defaults follow the ViT-B recipes of the BRIDLE paper (arXiv
2502.02118) and of the authors' scripts (github.com/HoangNguyenM/bridle, submit_*.sh).
"""

from .config import CfgNode as CN

_C = CN()
# Config format version.
_C.VERSION = 1

# Directory for checkpoints, metrics.json, TensorBoard events and the merged config.yaml.
_C.OUTPUT_DIR = "./output"
# Global random seed; < 0 picks one from the clock for the model's initialisation (it is logged
# either way); the data order and every step's randomness then derive from seed 0, so a resume
# still continues the same streams.
_C.SEED = 0
# Print a console metrics line (and write metrics.json / TensorBoard) every this many iterations.
_C.LOG_PERIOD = 20
# Show a tqdm progress bar on the main process.
_C.PROGRESS_BAR = True
# torch.backends.cudnn.benchmark
_C.CUDNN_BENCHMARK = False

_C.TRAINER = CN()
# Entry of the TRAINER registry to run: "schedule" (interleaved BRIDLE pretraining),
# "encoder", "tokenizer", "joint" (one pretraining phase), "finetune", "linear_probe".
_C.TRAINER.NAME = "schedule"

# ---------------------------------------------------------------------------- model
_C.MODEL = CN()
# "auto" (cuda if available, else cpu), "cpu", "cuda".
_C.MODEL.DEVICE = "auto"
# Checkpoint to initialise from (full BRIDLE checkpoint or exported encoder); "" = none.
_C.MODEL.WEIGHTS = ""
# META_ARCH entry of the pretraining model (a BridleModel subclass, built as cls(cfg, phase)).
_C.MODEL.META_ARCHITECTURE = "Bridle"
# META_ARCH entry of the fine-tuning / linear-probe model (built as cls(cfg)).
_C.MODEL.DOWNSTREAM_ARCHITECTURE = "EncoderClassifier"

_C.MODEL.PATCH_EMBED = CN()
# Entry of the PATCH_EMBED registry ("conv" is the core N-D conv embedder; plugins add theirs).
_C.MODEL.PATCH_EMBED.NAME = "conv"
# Input channels of the model input.
_C.MODEL.PATCH_EMBED.IN_CHANS = 3
# Size of the model input without batch/channel dims, e.g. [224, 224] or [16, 224, 224].
_C.MODEL.PATCH_EMBED.INPUT_SIZE = [224, 224]
# Patch (kernel = stride) size, one entry per input dim.
_C.MODEL.PATCH_EMBED.PATCH_SIZE = [16, 16]

_C.MODEL.ENCODER = CN()
# Entry of the BACKBONE registry.
_C.MODEL.ENCODER.NAME = "vit"
# Preset "tiny" | "small" | "base" | "large"; EMBED_DIM/DEPTH/NUM_HEADS > 0 override it.
_C.MODEL.ENCODER.SIZE = "base"
# Width (0 = from SIZE).
_C.MODEL.ENCODER.EMBED_DIM = 0
# Number of blocks (0 = from SIZE).
_C.MODEL.ENCODER.DEPTH = 0
# Attention heads (0 = from SIZE).
_C.MODEL.ENCODER.NUM_HEADS = 0
# MLP hidden width / embed width.
_C.MODEL.ENCODER.MLP_RATIO = 4.0
# Stochastic depth rate (linearly increasing over blocks).
_C.MODEL.ENCODER.DROP_PATH = 0.0
# Activation checkpointing of every block (saves memory, costs ~30% compute).
_C.MODEL.ENCODER.GRAD_CHECKPOINT = False

_C.MODEL.DECODER = CN()
# Decoder width.
_C.MODEL.DECODER.EMBED_DIM = 512
# Number of decoder blocks.
_C.MODEL.DECODER.DEPTH = 16
# Decoder attention heads.
_C.MODEL.DECODER.NUM_HEADS = 16
# "global" or "window" (Swin-style local windows over the patch grid, shifted on odd blocks).
_C.MODEL.DECODER.ATTENTION = "global"
# Window size per grid dim (window attention only).
_C.MODEL.DECODER.WINDOW_SIZE = [4, 4]
# Shift per grid dim applied on odd blocks (window attention only).
_C.MODEL.DECODER.SHIFT_SIZE = [2, 0]
# DECODER_BLOCK entry: "prenorm" (timm ViT block) or "swin_v2" (post-norm, cosine attention, learned
# temperature, continuous relative-position bias: the authors' local-decoder block).
_C.MODEL.DECODER.BLOCK = "prenorm"

_C.MODEL.TOKENIZER = CN()
# Use the cold-start tokenizer (frozen random patch embed + pos embed + random projection).
# The schedule sets this for the "encoder_cold" phase.
_C.MODEL.TOKENIZER.COLD_START = False
# BACKBONE registry entry of the (non cold-start) tokenizer.
_C.MODEL.TOKENIZER.NAME = "vit"
# Tokenizer ViT preset (as MODEL.ENCODER.SIZE).
_C.MODEL.TOKENIZER.SIZE = "base"
# Tokenizer ViT width (0 = from SIZE).
_C.MODEL.TOKENIZER.EMBED_DIM = 0
# Tokenizer ViT blocks (0 = from SIZE).
_C.MODEL.TOKENIZER.DEPTH = 0
# Tokenizer ViT heads (0 = from SIZE).
_C.MODEL.TOKENIZER.NUM_HEADS = 0
# Precision of the targets (tokenizer features + quantizer in the encoder/joint phase, the
# codebook init, tools/tokenize_dataset.py): "fp32" (autocast off, as the authors' fp32
# runs; bf16 features change some codes of every level) or "amp" (the step's autocast, cheaper).
_C.MODEL.TOKENIZER.TARGET_PRECISION = "fp32"

_C.MODEL.ESTIMATOR = CN()
# Tokenizer-estimator width.
_C.MODEL.ESTIMATOR.EMBED_DIM = 768
# Tokenizer-estimator blocks.
_C.MODEL.ESTIMATOR.DEPTH = 3
# Tokenizer-estimator heads.
_C.MODEL.ESTIMATOR.NUM_HEADS = 12

_C.MODEL.QUANTIZER = CN()
# Entry of the QUANTIZER registry: "rq" (residual) or "vq" (single normalised codebook).
_C.MODEL.QUANTIZER.NAME = "rq"
# Residual levels ("codebook_set"); must be 1 for "vq".
_C.MODEL.QUANTIZER.NUM_LEVELS = 4
# Codes per level ("code_num").
_C.MODEL.QUANTIZER.CODEBOOK_SIZE = 256
# Dimension of each code ("code_dim").
_C.MODEL.QUANTIZER.CODE_DIM = 256
# Update codebooks by EMA of assigned inputs (True) or learn them by gradient (False).
_C.MODEL.QUANTIZER.EMA = True
# EMA decay.
_C.MODEL.QUANTIZER.DECAY = 0.99
# Commitment weight beta of the codebook loss.
_C.MODEL.QUANTIZER.COMMITMENT = 0.25
# Codebook init: "kmeans" (k-means per level on the first batch, seeded with distinct random
# rows as the authors do; spherical for LOOKUP unit/cosine, Euclidean for LOOKUP euclidean),
# "kmeans++" (the same with k-means++-style seeding), "uniform" (U[0,1) * multiplier) or "normal".
_C.MODEL.QUANTIZER.INIT = "kmeans"
# Scale of the uniform/normal init.
_C.MODEL.QUANTIZER.INIT_WEIGHT_MULTIPLIER = 1.0
# k-means iterations for INIT = "kmeans" or "kmeans++".
_C.MODEL.QUANTIZER.KMEANS_ITERS = 10
# Replace dead codes with random inputs of the current batch (identical on every rank).
_C.MODEL.QUANTIZER.RESTART_DEAD_CODES = True
# A code is dead when it got fewer rows than this (a count, all ranks) over the usage window.
_C.MODEL.QUANTIZER.DEAD_CODE_THRESHOLD = 1.0
# Usage window, in training forwards: usage metrics and deadness count the rows each code got
# in the last this-many forwards; a code is restarted only after existing for a whole window.
_C.MODEL.QUANTIZER.DEAD_CODE_WINDOW = 20
# Check for dead codes every this many training forwards.
_C.MODEL.QUANTIZER.RESTART_PERIOD = 10
# Top-k codes per input used as (soft) targets; 1 = hard codes.
_C.MODEL.QUANTIZER.SOFT_CODES = 1
# RQ lookup: "unit" (the authors' RQ: each level l2-normalises its residual and picks the nearest
# unit-length code, the raw residual minus that unit code goes on), "euclidean" (codes keep
# lengths, Euclidean nearest code on raw residuals; not the authors') or "cosine" (codes keep
# lengths, chosen by cosine to the normalised residual; not the authors'). VQ ignores it.
_C.MODEL.QUANTIZER.LOOKUP = "unit"

_C.MODEL.MASK = CN()
# Entry of the MASK_GENERATOR registry.
_C.MODEL.MASK.NAME = "random"
# Fraction of patches masked.
_C.MODEL.MASK.RATIO = 0.8

_C.MODEL.HEAD = CN()
# HEAD registry entry: fn(cfg, in_dim, num_classes) -> module, pooled features -> logits.
_C.MODEL.HEAD.NAME = "linear"
# Number of classes of the downstream task.
_C.MODEL.HEAD.NUM_CLASSES = 1000
# "ce" (single-label, soft targets allowed) or "bce" (multi-label).
_C.MODEL.HEAD.LOSS = "ce"
# Label smoothing for "ce".
_C.MODEL.HEAD.LABEL_SMOOTHING = 0.0
# Std of the trunc-normal init of the head weights.
_C.MODEL.HEAD.INIT_STD = 2e-5
# BatchNorm (no affine) before the head, as MAE's linear probe.
_C.MODEL.HEAD.BATCHNORM = False
# Dropout before the head.
_C.MODEL.HEAD.DROPOUT = 0.0

# ---------------------------------------------------------------------------- pretraining
_C.PRETRAIN = CN()
# Phases run in order by TRAINER.NAME = "schedule": "encoder_cold", "tokenizer", "encoder",
# "joint". Each runs in OUTPUT_DIR/<k>_<phase>/.
_C.PRETRAIN.SCHEDULE = ["encoder_cold", "tokenizer", "encoder"]
# Joint phase: L = L_enc + RATIO * L_tok.
_C.PRETRAIN.JOINT_RATIO = 0.1
# Joint phase: a tokenizer step every this many iterations.
_C.PRETRAIN.JOINT_TOKENIZER_PERIOD = 4
# Tokenizer phases after the first warm-start T and TE from the previous tokenizer
# (codebooks are always re-initialised).
_C.PRETRAIN.TOKENIZER_WARM_START = True
# Precision of the frozen teacher encoder's forward in the tokenizer (and joint) phase: "bf16"
# (autocast; its normed features match fp32 to cosine > 0.999, benchmarks/README.md), "fp16",
# "fp32" (autocast off), or "auto" (whatever SOLVER.PRECISION gives the step).
_C.PRETRAIN.TEACHER_PRECISION = "bf16"
# Which of the frozen teacher's layers the tokenizer reconstructs: 0 = the last block's output
# after the encoder's final norm (the authors, BEATs); k >= 1 = the output of block k (1-based),
# normalised by a LayerNorm without affine (data2vec-style; the final norm is trained for the
# last block only). The number of blocks must be > k.
_C.PRETRAIN.TEACHER_LAYER = 0
# Encoder phases start the decoder from MODEL.WEIGHTS' decoder (as the authors); its head is
# re-initialised only when its shape changed. False = a fresh decoder every encoder phase.
_C.PRETRAIN.CARRY_DECODER = True
# Masked views per sample in the encoder phases (encoder_cold, encoder, joint): the tokenizer's
# codes are computed once per sample, the encoder and decoder train on NUM_MASKS independently
# masked copies (batch B x NUM_MASKS views of B samples, one backward, loss averaged over views).
# 1 = the authors' (one mask per sample). An integer >= 1; the tokenizer phase ignores it.
# SOLVER.BATCH_SIZE_PER_GPU and epochs count samples, not views (docs/training.md).
_C.PRETRAIN.NUM_MASKS = 1
# Per-phase solver settings; values < 0 inherit from SOLVER. OPTS are extra KEY VALUE
# overrides applied to that phase only.
_C.PRETRAIN.PHASES = CN()
for _phase in ("ENCODER_COLD", "ENCODER", "TOKENIZER", "JOINT"):
    _p = CN()
    _p.EPOCHS = -1.0  # training epochs of the phase
    _p.MAX_ITER = -1  # iterations of the phase (> 0 overrides EPOCHS)
    _p.WARMUP_EPOCHS = -1.0  # linear warmup epochs
    _p.BASE_LR = -1.0  # peak learning rate
    _p.WEIGHT_DECAY = -1.0  # AdamW weight decay
    _p.OPTS = []  # extra KEY VALUE overrides for this phase
    _C.PRETRAIN.PHASES[_phase] = _p

# ---------------------------------------------------------------------------- solver
_C.SOLVER = CN()
# Training length in epochs over DATASETS.TRAIN.
_C.SOLVER.EPOCHS = 100.0
# Training length in iterations (> 0 overrides EPOCHS).
_C.SOLVER.MAX_ITER = 0
# Linear warmup length in epochs.
_C.SOLVER.WARMUP_EPOCHS = 0.0
# Linear warmup length in iterations (> 0 overrides WARMUP_EPOCHS).
_C.SOLVER.WARMUP_ITERS = 0
# Allow a warm-up at least as long as the run / phase (the lr never peaks); False = refuse before step 1.
_C.SOLVER.ALLOW_LONG_WARMUP = False
# Peak learning rate (absolute, for the effective batch).
_C.SOLVER.BASE_LR = 5e-4
# Learning rate at the end of the cosine schedule.
_C.SOLVER.MIN_LR = 0.0
# AdamW weight decay (never applied to biases, norms, positional/cls/mask tokens).
_C.SOLVER.WEIGHT_DECAY = 0.05
# AdamW betas.
_C.SOLVER.BETAS = (0.9, 0.95)
# AdamW eps.
_C.SOLVER.EPS = 1e-8
# AdamW implementation: "auto" (fused on CUDA, and on the CPU where torch has that kernel;
# torch's default elsewhere), "fused", "foreach", "for".
_C.SOLVER.OPTIMIZER_IMPL = "auto"
# Layer-wise lr decay for fine-tuning (1.0 = off).
_C.SOLVER.LAYER_DECAY = 1.0
# Clip the global gradient norm to this value (0 = off).
_C.SOLVER.CLIP_GRAD = 0.0
# "fp32", "bf16" or "fp16" (autocast; fp16 uses a GradScaler).
_C.SOLVER.PRECISION = "fp32"
# Samples per process per step.
_C.SOLVER.BATCH_SIZE_PER_GPU = 32
# Gradient accumulation steps; effective batch = BATCH_SIZE_PER_GPU * world size * ACCUM_STEPS.
_C.SOLVER.ACCUM_STEPS = 1
# Save a checkpoint every this many iterations (a final one is always saved).
_C.SOLVER.CHECKPOINT_PERIOD = 1000
# Keep at most this many periodic checkpoints (0 = all).
_C.SOLVER.MAX_TO_KEEP = 2
# torch.compile the model.
_C.SOLVER.COMPILE = False
# What a non-finite loss does: "stop" (checked without a per-step host sync at log and checkpoint
# boundaries; nothing non-finite is saved) or "skip" (drop that step on every rank, with the buffers
# its forwards moved; one host sync per step).
_C.SOLVER.NONFINITE = "stop"
# SOLVER.NONFINITE "skip": the run stops once more than this many steps were skipped.
_C.SOLVER.NONFINITE_BUDGET = 10
# With several processes, the ranks agree on a stop request (SIGTERM/SIGINT/SIGUSR1) every this many iterations.
_C.SOLVER.STOP_CHECK_PERIOD = 10

# ---------------------------------------------------------------------------- data
_C.DATASETS = CN()
# DATASET registry entry used for training ("" = none).
_C.DATASETS.TRAIN = ""
# DATASET registry entry used for the final evaluation ("" = none).
_C.DATASETS.TEST = ""
# DATASET registry entry used for model selection, if any ("" = none).
_C.DATASETS.VAL = ""
# The "shards" dataset: WebDataset tar shards written by tools/make_shards.py, read as a stream.
_C.DATASETS.SHARDS = CN()
# index.json of the "train" split's shards (a directory holding one works too).
_C.DATASETS.SHARDS.TRAIN_INDEX = ""
# index.json of the "val" split's shards ("" = none).
_C.DATASETS.SHARDS.VAL_INDEX = ""
# index.json of the "test" split's shards ("" = none).
_C.DATASETS.SHARDS.TEST_INDEX = ""
# SAMPLE_DECODER registry entry that turns a sample's bytes into an item ("" = the one the index names).
_C.DATASETS.SHARDS.DECODER = ""
# Samples held by each loader worker's shuffle buffer in training
# (shards are also permuted each epoch; <= 1 = no buffer).
_C.DATASETS.SHARDS.SHUFFLE_BUFFER = 1000

_C.DATALOADER = CN()
# Loader worker processes per process.
_C.DATALOADER.NUM_WORKERS = 4
# Samples that make one "epoch" for SOLVER.EPOCHS/WARMUP_EPOCHS (0 = the training set's size);
# e.g. 200000 for epochs of 200k weighted draws (as AST counts them).
_C.DATALOADER.SAMPLES_PER_EPOCH = 0
# SAMPLER registry entry for training ("TrainingSampler": shuffled, sharded, resumable).
_C.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"
# WeightedSampler: draw with replacement (AST) or, False, without replacement within an epoch (the
# authors' AS-2M fine-tuning).
_C.DATALOADER.WEIGHTED_SAMPLER_REPLACEMENT = True
# Pin host memory.
_C.DATALOADER.PIN_MEMORY = True
# Batches prefetched per worker.
_C.DATALOADER.PREFETCH_FACTOR = 2
# Training stops when more than this fraction of the items read are unreadable (naming the first bad files).
_C.DATALOADER.MAX_BAD_FRACTION = 0.01

_C.DIST = CN()
# Timeout of a collective in minutes: a rank that died or hangs ends the job after this long.
_C.DIST.TIMEOUT_MINUTES = 30.0

_C.INPUT = CN()
# TRANSFORM registry entries applied to each training batch on the device (e.g. mixup).
_C.INPUT.BATCH_TRANSFORMS = []

# ---------------------------------------------------------------------------- evaluation
_C.TEST = CN()
# Evaluate every this many iterations during training (0 = only at the end).
_C.TEST.EVAL_PERIOD = 0
# EVALUATOR registry entries.
_C.TEST.EVALUATORS = ["accuracy"]
# Samples per process at evaluation.
_C.TEST.BATCH_SIZE_PER_GPU = 64
# Online probes during pretraining (bridle/evaluation/online_probe.py, docs/online_probes.md): every
# PERIOD iterations of an encoder phase (encoder_cold / encoder / joint) and at its end, the frozen
# encoder's pooled features of a small labelled set give a kNN top-1 and a closed-form linear probe
# (val part), plus label-free signals on the val items: masked-token accuracy (fixed masks), the
# tokenizer's code perplexity per level and the features' effective rank. Logged as probe/* in
# metrics.json and TensorBoard. No effect on training (its own RNG and loader, RNG states restored).
_C.TEST.ONLINE_PROBE = CN()
# Run the online probes.
_C.TEST.ONLINE_PROBE.ENABLED = False
# Probe every this many iterations of an encoder phase (0 = only at the phase end).
_C.TEST.ONLINE_PROBE.PERIOD = 500
# DATASET registry entries of the labelled probe set's train and val parts ("" = DATASETS.TRAIN /
# DATASETS.VAL after OPTS), built in mode "eval" with splits "train" and "val" (a regular dataset
# even when training reads shards).
_C.TEST.ONLINE_PROBE.TRAIN = ""
# (the val part: see TRAIN)
_C.TEST.ONLINE_PROBE.VAL = ""
# KEY VALUE overrides of the run's config for building the probe set (e.g. the downstream data's
# DATASETS.* keys, as the linear-probe run gets them).
_C.TEST.ONLINE_PROBE.OPTS = []
# At most this many items of each part (the first ones; 0 = all).
_C.TEST.ONLINE_PROBE.MAX_ITEMS = 1000
# Neighbours of the cosine kNN classifier (weighted vote as in Wu et al. 2018, arXiv 1805.01978).
_C.TEST.ONLINE_PROBE.K = 20
# Linear probe on the pooled features: "ridge" (closed form, to one-hot targets, lambda chosen by the
# train part's leave-one-out accuracy) or "logistic" (multinomial, a few LBFGS steps).
_C.TEST.ONLINE_PROBE.PROBE = "ridge"
# Encoder output probed: 0 = the final normed tokens; k = after block k (layer-normed).
_C.TEST.ONLINE_PROBE.LAYER = 0
# Pooling of the tokens: "mean" (patch tokens) or "cls".
_C.TEST.ONLINE_PROBE.POOL = "mean"
# Val items used for the label-free signals (masked-token accuracy, code perplexity); 0 = none.
_C.TEST.ONLINE_PROBE.LABEL_FREE_ITEMS = 256
# Seed of the probe's own masks (fixed over the run: every period sees the same masks).
_C.TEST.ONLINE_PROBE.SEED = 0
