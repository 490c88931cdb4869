import math


class WarmupCosineSchedule:
    """Per-iteration learning rate: linear warmup from 0, then cosine down to ``min_lr``.
    A pure function of the iteration, so resuming needs nothing but the iteration number."""

    def __init__(self, base_lr: float, max_iter: int, warmup_iters: int = 0, min_lr: float = 0.0) -> None:
        self.base_lr = float(base_lr)
        self.max_iter = max(1, int(max_iter))
        self.warmup_iters = max(0, int(warmup_iters))
        self.min_lr = float(min_lr)

    def __call__(self, it: int) -> float:
        if it < self.warmup_iters:
            return self.base_lr * (it + 1) / self.warmup_iters
        span = max(1, self.max_iter - self.warmup_iters)
        progress = min(1.0, (it - self.warmup_iters) / span)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def state_dict(self) -> dict:
        return dict(self.__dict__)

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)
