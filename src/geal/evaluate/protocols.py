"""The two downstream protocols: a small CNN from scratch, and a linear probe.

Both have one fixed recipe, the same for every strategy, budget and seed, so that a
difference in accuracy can only come from the selected images.

(a) ``cnn``: a VGG-style net of three 3x3 conv blocks (conv, batch norm, ReLU, 2x2 max
    pool; 16, 32, 64 channels), an adaptive 3x3 pool, a 64-unit hidden layer (the
    penultimate features the core-set loop uses) and a linear classifier, trained from
    scratch on the selected raw images. AdamW (lr 3e-3, weight decay 5e-4, cosine decay
    to 0), batches of ``min(n, 64)``, ``max(200, ceil(15 * n / 64))`` steps: 15 epochs for
    large selections, a floor of 200 steps so that 10 images are not under-trained.
    Augmentation: random shifts of up to 2 px (zero padding) and horizontal flips.
    Pixels are scaled to [-1, 1]. Everything random (weights, batches, augmentation)
    draws from one ``torch.Generator`` seeded by (seed, budget), and the selected images
    are sorted first, so the result depends on the set, not on the pick order.
(b) ``linear``: multinomial logistic regression (L-BFGS, C = 1, at most 1000 iterations)
    on the frozen backbone's global features of the selected images, standardised with
    the whole pool's mean and deviation (no labels needed), tested on the test images'
    global features from the same backbone.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from geal.errors import GealError

log = logging.getLogger(__name__)

PROTOCOLS = ("cnn", "linear")


@dataclass(frozen=True)
class CNNRecipe:
    """The fixed training recipe of protocol (a); see the module docstring."""

    widths: tuple[int, int, int] = (16, 32, 64)
    hidden: int = 64
    batch: int = 64
    epochs: int = 15
    min_steps: int = 200
    lr: float = 3e-3
    weight_decay: float = 5e-4
    shift: int = 2
    flip: bool = True

    def steps(self, n: int) -> int:
        """Optimisation steps for ``n`` training images."""
        return max(self.min_steps, math.ceil(self.epochs * n / self.batch))


@dataclass(frozen=True)
class LinearRecipe:
    """The fixed recipe of protocol (b)."""

    C: float = 1.0
    max_iter: int = 1000


CNN_RECIPE = CNNRecipe()
LINEAR_RECIPE = LinearRecipe()


def torch_generator(*key: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from integers (no global RNG)."""
    seed = int(np.random.SeedSequence([int(k) for k in key]).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(seed & ((1 << 63) - 1))


@contextlib.contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Restore torch's intra-op thread count after the block.

    The first parallel numba kernel of a process (the samplers' coverage updates) starts
    an OpenMP pool that resets torch's thread count to every core; on a small shared CPU
    that makes the tiny CNN several times slower, so selections run inside this guard.
    """
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def as_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[n, H, W]`` or ``[n, H, W, C]`` images -> float ``[n, C, H, W]`` in [-1, 1]."""
    x = torch.from_numpy(np.array(images, dtype=np.uint8))  # a writable copy
    x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.float().div_(127.5).sub_(1.0)


class SmallCNN(nn.Module):
    """Three conv blocks, a hidden layer (the penultimate features) and a classifier."""

    def __init__(self, channels: int, classes: int, recipe: CNNRecipe = CNN_RECIPE):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = channels
        for c in recipe.widths:
            layers += [
                nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c
        layers += [nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(c_in * 9, recipe.hidden)]
        layers += [nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(recipe.hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def init_(self, gen: torch.Generator) -> SmallCNN:
        """He-normal weights and zero biases drawn from ``gen``."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        return self


def augment(x: torch.Tensor, shift: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to ``shift`` pixels (zero fill) and horizontal flips, per image."""
    b, _, h, w = x.shape
    if shift > 0:
        xp = nn.functional.pad(x, (shift, shift, shift, shift))
        oy = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
        ox = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
        rows = (oy[:, None] + torch.arange(h))[:, :, None]  # [b, h, 1]
        cols = (ox[:, None] + torch.arange(w))[:, None, :]  # [b, 1, w]
        x = xp[torch.arange(b)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if flip:
        mask = torch.rand(b, generator=gen) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x.contiguous()


@dataclass
class TrainedCNN:
    """A model trained by :func:`train_cnn` and how long it took."""

    model: SmallCNN
    seconds: float
    steps: int
    cpu_seconds: float = 0.0

    @torch.inference_mode()
    def _map(self, fn: Any, x: torch.Tensor, batch: int) -> torch.Tensor:
        # channels-last batches of ~128 run several times faster on CPU than NCHW
        self.model.eval().to(memory_format=torch.channels_last)
        out = [
            fn(x[a : a + batch].contiguous(memory_format=torch.channels_last))
            for a in range(0, x.shape[0], batch)
        ]
        return torch.cat(out)

    def logits(self, x: torch.Tensor, batch: int = 128) -> torch.Tensor:
        """Class scores ``[n, classes]`` of images ``x`` ``[n, C, H, W]``."""
        return self._map(self.model, x, batch)

    def features(self, x: torch.Tensor, batch: int = 128) -> torch.Tensor:
        """Penultimate (hidden-layer) features ``[n, hidden]``."""
        return self._map(self.model.features, x, batch)

    def accuracy(self, x: torch.Tensor, y: np.ndarray, batch: int = 128) -> float:
        pred = self.logits(x, batch).argmax(1).numpy()
        return float((pred == np.asarray(y)).mean())


def train_cnn(
    images: torch.Tensor,
    labels: np.ndarray,
    indices: np.ndarray,
    classes: int,
    seed: int,
    recipe: CNNRecipe = CNN_RECIPE,
) -> TrainedCNN:
    """Train protocol (a)'s CNN from scratch on ``images[indices]``.

    Args:
        images: the whole pool as float ``[N, C, H, W]`` (see :func:`as_nchw`).
        labels: int labels of the whole pool ``[N]``.
        indices: the selected pool indices (order does not matter).
        classes: number of classes of the task.
        seed: training seed; with the budget it seeds every random choice.
        recipe: the recipe (the default is the published protocol).
    """
    idx = np.unique(np.asarray(indices, dtype=np.int64))
    if idx.size == 0:
        raise GealError("cannot train on an empty selection")
    t0, c0 = time.perf_counter(), time.thread_time()
    gen = torch_generator(seed, idx.size, 0xC44)
    x = images[torch.from_numpy(idx)]
    y = torch.from_numpy(np.asarray(labels)[idx].astype(np.int64))
    model = SmallCNN(images.shape[1], classes, recipe).init_(gen)
    steps = recipe.steps(idx.size)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / steps))
    )
    bs = min(recipe.batch, idx.size)
    model.train()
    perm = torch.randperm(idx.size, generator=gen)
    pos = 0
    for _ in range(steps):
        if pos + bs > idx.size:
            perm = torch.randperm(idx.size, generator=gen)
            pos = 0
        b = perm[pos : pos + bs]
        pos += bs
        xb = augment(x[b], recipe.shift, recipe.flip, gen)
        loss = nn.functional.cross_entropy(model(xb), y[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return TrainedCNN(model, time.perf_counter() - t0, steps, time.thread_time() - c0)


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    mean: np.ndarray,
    std: np.ndarray,
    recipe: LinearRecipe = LINEAR_RECIPE,
) -> float:
    """Test accuracy of protocol (b)'s logistic regression (see the module docstring).

    A selection holding one class predicts that class everywhere.
    """
    lr_cls = _sklearn_logistic()
    ty = np.asarray(train_y)
    present = np.unique(ty)
    if present.size == 1:
        return float((np.asarray(test_y) == present[0]).mean())
    scale = np.where(std > 0, std, 1.0)
    a = (np.asarray(train_x, np.float64) - mean) / scale
    b = (np.asarray(test_x, np.float64) - mean) / scale
    clf = lr_cls(C=recipe.C, max_iter=recipe.max_iter)
    clf.fit(a, ty)
    return float((clf.predict(b) == np.asarray(test_y)).mean())


def _sklearn_logistic() -> Any:
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:  # pragma: no cover - depends on the environment
        raise GealError(
            "the linear-probe protocol needs scikit-learn: pip install 'geal[eval]'"
        ) from None
    return LogisticRegression
