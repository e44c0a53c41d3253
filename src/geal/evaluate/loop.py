"""The traditional active-learning loop, the baseline GEAL claims to replace.

Rounds of: train the task model (protocol (a)'s CNN, its fixed recipe, a fresh model
every round) on the labels held -> score the unlabelled pool with it -> add a batch ->
repeat, up to each budget in turn. The first budget is a seeded random draw (the same
images as the ``random`` strategy's for that seed). Two scoring rules:

- ``entropy``: the images whose softmax has the highest entropy (plain top-k).
- ``coreset``: k-center greedy (Sener & Savarese, ICLR 2018) on the task model's
  penultimate features, Euclidean, starting from the labelled images, on geal's exact
  coverage engine (the same one ``fds`` and ``kcenter`` use).

The accuracy at a budget is that of the model trained on the labels held at that
budget, with the same recipe every other strategy is judged by. The wall time of every
stage (train, score, select) of every round is recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from geal.errors import GealError
from geal.evaluate.protocols import CNNRecipe, TrainedCNN, keep_torch_threads, train_cnn
from geal.evaluate.task import Task

log = logging.getLogger(__name__)


@dataclass
class Round:
    """One round: the model trained at ``budget`` and the batch it chose for the next.

    ``score_seconds`` and ``select_seconds`` are 0 in the last round (nothing to add).
    """

    budget: int
    accuracy: float
    train_seconds: float
    score_seconds: float
    select_seconds: float
    steps: int
    train_cpu: float = 0.0
    score_cpu: float = 0.0
    select_cpu: float = 0.0


@dataclass
class LoopRun:
    """Result of :func:`traditional_loop` for one seed."""

    method: str
    seed: int
    selections: dict[int, np.ndarray]
    rounds: list[Round] = field(default_factory=list)

    def seconds_before(self, budget: int, *, cpu: bool = False) -> float:
        """Time spent obtaining the labels of ``budget``: every earlier round's
        train + score + select (the round at ``budget`` trains the evaluated model).
        Wall seconds, or CPU seconds of the thread that ran the loop with ``cpu``."""
        done = [r for r in self.rounds if r.budget < budget]
        if cpu:
            return float(sum(r.train_cpu + r.score_cpu + r.select_cpu for r in done))
        return float(sum(r.train_seconds + r.score_seconds + r.select_seconds for r in done))


def entropy_scores(model: TrainedCNN, x: torch.Tensor) -> np.ndarray:
    """Softmax entropy of every image (higher = less certain)."""
    logp = torch.log_softmax(model.logits(x).double(), dim=1)
    return (-(logp.exp() * logp).sum(1)).numpy()


class _Clock:
    """Wall and CPU seconds (of this thread) of consecutive stages."""

    def __init__(self) -> None:
        self.t, self.c = time.perf_counter(), time.thread_time()

    def lap(self) -> tuple[float, float]:
        t, c = time.perf_counter(), time.thread_time()
        out = (t - self.t, c - self.c)
        self.t, self.c = t, c
        return out


Timed = tuple[np.ndarray, tuple[float, float], tuple[float, float]]


def pick_entropy(
    model: TrainedCNN, x: torch.Tensor, labeled: np.ndarray, k: int, seed: int
) -> Timed:
    """Top-``k`` entropy among unlabelled images.

    Returns:
        picks, (score wall s, score CPU s), (select wall s, select CPU s).
    """
    clock = _Clock()
    h = entropy_scores(model, x)
    score = clock.lap()
    h[labeled] = -np.inf
    picks = np.argsort(-h, kind="stable")[:k].astype(np.int64)
    return picks, score, clock.lap()


def pick_coreset(
    model: TrainedCNN, x: torch.Tensor, labeled: np.ndarray, k: int, seed: int
) -> Timed:
    """k-center greedy on penultimate features, starting from the labelled set.

    Returns:
        picks, (score wall s, score CPU s), (select wall s, select CPU s).
    """
    from geal.coverage import Coverage, CoverageState, greedy

    clock = _Clock()
    feats = model.features(x).numpy()
    score = clock.lap()
    cov = Coverage([feats], np.ones(feats.shape[0], np.int64), distance="euclidean")

    def step(c: CoverageState, _t: int, _rng: np.random.Generator) -> int:
        return c.farthest()

    picks = greedy(
        cov,
        k,
        step,
        strategy="loop-coreset",
        seed=seed,
        labeled=labeled.tolist(),
        params={"distance": "euclidean"},
        progress=False,
    )
    return picks.order, score, clock.lap()


Picker = Callable[[TrainedCNN, torch.Tensor, np.ndarray, int, int], Timed]
METHODS: dict[str, Picker] = {"entropy": pick_entropy, "coreset": pick_coreset}


def random_start(n: int, budget: int, seed: int) -> np.ndarray:
    """The ``random`` strategy's first ``budget`` picks for ``seed`` on an all-readable pool."""
    from geal.bank import PatternBank
    from geal.sampling import select

    dummy = PatternBank.from_arrays(np.zeros((n, 1), np.float32), np.ones(n, np.int64))
    return select(dummy, budget, "random", seed=seed).selection(budget)


def traditional_loop(
    task: Task,
    budgets: Sequence[int],
    seed: int,
    method: str = "entropy",
    *,
    start: np.ndarray | None = None,
    recipe: CNNRecipe | None = None,
    on_round: Callable[[Round], Any] | None = None,
) -> LoopRun:
    """Run the train -> score -> select loop up to every budget (ascending).

    Args:
        task: the task (pool images, labels and test images are used; no bank).
        budgets: label counts to reach; the first is drawn at random.
        seed: seeds the random start and every training.
        method: ``entropy`` or ``coreset``.
        start: the first budget's images (default: :func:`random_start`).
        recipe: the CNN recipe (default: the task's, i.e. protocol (a)'s).
        on_round: called with every finished round (progress, logging).
    """
    if method not in METHODS:
        raise GealError(f"unknown loop method {method!r}; use {' or '.join(METHODS)}")
    steps = sorted({int(b) for b in budgets})
    if not steps or steps[0] < 1 or steps[-1] > task.n:
        raise GealError(f"loop budgets must lie in 1..{task.n}, got {list(budgets)}")
    labeled = random_start(task.n, steps[0], seed) if start is None else np.asarray(start)
    if labeled.size != steps[0]:
        raise GealError(f"the start holds {labeled.size} images, the first budget is {steps[0]}")
    recipe = task.cnn_recipe if recipe is None else recipe
    x, xt = task.pool_tensor, task.test_tensor
    run = LoopRun(method, seed, {})
    for i, budget in enumerate(steps):
        run.selections[budget] = labeled.copy()
        model = train_cnn(x, task.pool_labels, labeled, task.classes, seed, recipe)
        acc = model.accuracy(xt, task.test_labels)
        score = select = (0.0, 0.0)
        if i + 1 < len(steps):
            with keep_torch_threads():
                picks, score, select = METHODS[method](
                    model, x, labeled, steps[i + 1] - budget, seed
                )
            labeled = np.concatenate([labeled, picks])
        r = Round(
            budget,
            acc,
            model.seconds,
            score[0],
            select[0],
            model.steps,
            model.cpu_seconds,
            score[1],
            select[1],
        )
        run.rounds.append(r)
        log.info(
            "loop-%s seed %d: %d labels, acc %.4f, train %.1f s, score %.1f s, select %.1f s",
            method,
            seed,
            budget,
            acc,
            r.train_seconds,
            r.score_seconds,
            r.select_seconds,
        )
        if on_round is not None:
            on_round(r)
    return run
