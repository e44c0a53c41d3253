"""Learning curves: select with every strategy, train with every protocol, per budget and seed.

A strategy is a sampler name from :data:`geal.sampling.SAMPLERS` (``"prob"``), the same
with a cluster count (``"prob-k1"``: select from the K=1 bank; a plain name uses the
largest K), a traditional loop (``"loop-entropy"``, ``"loop-coreset"``), a
``(name, callable)`` pair whose callable has a sampler's signature
``(bank, budget, *, seed, labeled) -> Ranking | indices``, or a :class:`Strategy`.

Every strategy selects afresh for every budget (so ``select_seconds`` is the cost of
that budget alone) from the task's bank of its backbone, and the same selection trained
with the same protocol and seed is never trained twice (the ``random`` strategy and the
loops do not depend on the backbone).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geal.errors import GealError
from geal.evaluate.loop import METHODS, LoopRun, random_start, traditional_loop
from geal.evaluate.protocols import PROTOCOLS, keep_torch_threads, linear_probe, train_cnn
from geal.evaluate.task import Task

log = logging.getLogger(__name__)

LOOP_PREFIX = "loop-"
ROW_KEYS = (
    "strategy",
    "backbone",
    "protocol",
    "budget",
    "seed",
    "accuracy",
    "classes",
    "select_seconds",
    "train_seconds",
)


@dataclass(frozen=True)
class Strategy:
    """A selection rule to evaluate.

    Attributes:
        name: label in the results.
        fn: a sampler-like callable; None with ``sampler`` set uses the registry.
        sampler: registry name in :data:`geal.sampling.SAMPLERS`.
        clusters: the bank's K to select from (None: the largest the task has).
        loop: ``entropy`` or ``coreset`` for the traditional loop (no bank at all).
        options: extra keyword arguments for the sampler.
    """

    name: str
    fn: Callable[..., Any] | None = None
    sampler: str | None = None
    clusters: int | None = None
    loop: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def select(self, bank: Any, budget: int, seed: int) -> np.ndarray:
        """Pool indices of this strategy's selection of ``budget`` images."""
        from geal.sampling import SAMPLERS, RunSettings

        fn = self.fn if self.fn is not None else SAMPLERS[str(self.sampler)]
        kwargs = dict(self.options)
        if self.fn is None:
            kwargs.setdefault("run", RunSettings(progress=False))
        out = fn(bank, budget, seed=seed, labeled=None, **kwargs)
        idx = out.selection(budget) if hasattr(out, "selection") else np.asarray(out, np.int64)
        idx = np.asarray(idx, dtype=np.int64)
        if idx.shape != (budget,) or np.unique(idx).size != budget:
            raise GealError(f"strategy {self.name!r} returned {idx.size} picks for budget {budget}")
        return idx


_K = re.compile(r"^(?P<name>.+)-k(?P<k>\d+)$")


def resolve_strategy(spec: str | tuple[str, Callable[..., Any]] | Strategy) -> Strategy:
    """A :class:`Strategy` from a name, a ``(name, callable)`` pair or a Strategy."""
    from geal.sampling import SAMPLERS

    if isinstance(spec, Strategy):
        return spec
    if isinstance(spec, tuple):
        name, fn = spec
        m = _K.match(name)
        return Strategy(name, fn=fn, clusters=int(m["k"]) if m else None)
    if spec.startswith(LOOP_PREFIX) and spec[len(LOOP_PREFIX) :] in METHODS:
        return Strategy(spec, loop=spec[len(LOOP_PREFIX) :])
    if spec in SAMPLERS:
        return Strategy(spec, sampler=spec)
    m = _K.match(spec)
    if m and m["name"] in SAMPLERS:
        return Strategy(spec, sampler=m["name"], clusters=int(m["k"]))
    loops = ", ".join(LOOP_PREFIX + k for k in METHODS)
    raise GealError(
        f"unknown strategy {spec!r}; use one of {', '.join(sorted(SAMPLERS))}, {loops}, "
        "NAME-kK for a K-cluster bank, or a (name, callable) pair"
    )


def _digest(indices: np.ndarray) -> str:
    return hashlib.sha1(np.sort(np.asarray(indices, np.int64)).tobytes()).hexdigest()


def evaluate_selection(
    task: Task,
    indices: Sequence[int] | np.ndarray,
    protocol: str = "cnn",
    seed: int = 0,
    *,
    backbone: str | None = None,
) -> float:
    """Test accuracy of the downstream model trained on ``indices`` with ``protocol``.

    Deterministic in (the set of indices, protocol, seed, backbone); results are
    memoised on the task, so asking twice costs nothing.

    Args:
        task: the task.
        indices: selected pool indices (order does not matter).
        protocol: ``cnn`` (small CNN from scratch on raw images) or ``linear``
            (logistic regression on the backbone's global features).
        seed: training seed (the CNN's weights, batches and augmentation).
        backbone: whose features the linear probe uses (default: the task's first).
    """
    return _evaluate(task, np.asarray(indices, np.int64), protocol, seed, backbone)[0]


Result = tuple[float, float, float]  # accuracy, wall seconds, CPU seconds


def _eval_key(
    task: Task, indices: np.ndarray, protocol: str, seed: int, backbone: str | None
) -> tuple[Any, ...]:
    if protocol not in PROTOCOLS:
        raise GealError(f"unknown protocol {protocol!r}; use {' or '.join(PROTOCOLS)}")
    if indices.size == 0 or indices.min() < 0 or indices.max() >= task.n:
        raise GealError(f"selection indices must lie in 0..{task.n - 1}")
    bb = task.backbone(backbone).name if protocol == "linear" else None
    return ("eval", protocol, bb, int(seed), _digest(indices))


def _compute(
    task: Task, indices: np.ndarray, protocol: str, seed: int, backbone: str | None
) -> Result:
    """Train and test once (no memo): (accuracy, wall s, CPU s of this thread)."""
    t, c = time.perf_counter(), time.thread_time()
    if protocol == "cnn":
        model = train_cnn(
            task.pool_tensor, task.pool_labels, indices, task.classes, seed, task.cnn_recipe
        )
        acc = model.accuracy(task.test_tensor, task.test_labels)
    else:
        b = task.backbone(backbone)
        if b.test_features is None:
            raise GealError(f"backbone {b.name!r} has no test features for the linear probe")
        mean, std = b.feature_stats
        idx = np.unique(indices)
        acc = linear_probe(
            b.pool_features[idx],
            task.pool_labels[idx],
            b.test_features,
            task.test_labels,
            mean=mean,
            std=std,
            recipe=task.linear_recipe,
        )
    return acc, time.perf_counter() - t, time.thread_time() - c


def _evaluate(
    task: Task, indices: np.ndarray, protocol: str, seed: int, backbone: str | None
) -> Result:
    """(accuracy, wall s, CPU s), memoised on the task."""
    key = _eval_key(task, indices, protocol, seed, backbone)
    if key not in task.cache:
        task.cache[key] = _compute(task, indices, protocol, seed, key[2])
    return task.cache[key]


def class_coverage(task: Task, indices: Sequence[int] | np.ndarray) -> int:
    """Number of distinct classes among the selected images."""
    return int(np.unique(task.pool_labels[np.asarray(indices, np.int64)]).size)


def _loop_key(method: str, budgets: Sequence[int], seed: int) -> tuple[Any, ...]:
    return ("loop", method, tuple(sorted({int(b) for b in budgets})), int(seed))


def _remember_loop(task: Task, run: LoopRun, budgets: Sequence[int]) -> None:
    """Store a loop run and its rounds' CNN results (the same recipe as protocol (a))."""
    for r in run.rounds:
        ekey = ("eval", "cnn", None, int(run.seed), _digest(run.selections[r.budget]))
        task.cache.setdefault(ekey, (r.accuracy, r.train_seconds, r.train_cpu))
    task.cache[_loop_key(run.method, budgets, run.seed)] = run


def loop_run(task: Task, method: str, budgets: Sequence[int], seed: int) -> LoopRun:
    """The traditional loop for ``seed`` from the ``random`` strategy's start, memoised
    on the task; its CNN results are memoised as the ``cnn`` protocol's too."""
    key = _loop_key(method, budgets, seed)
    if key not in task.cache:
        steps = key[2]
        run = traditional_loop(
            task, steps, seed, method, start=random_start(task.n, steps[0], seed)
        )
        _remember_loop(task, run, steps)
    return task.cache[key]


# --- parallel trainings ----------------------------------------------------------------------
class _Runner:
    """Runs trainings here or in worker threads (torch and numpy release the GIL in their
    kernels; every training has its own generator, so results do not depend on it)."""

    def __init__(self, task: Task, workers: int):
        self.task = task
        self.pool: Any = None
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            if task.pool_images is not None:  # build once, before the threads race for it
                _ = task.pool_tensor, task.test_tensor
            for bb in task.backbones.values():
                _ = bb.pool_features, bb.feature_stats
            self.pool = ThreadPoolExecutor(workers, thread_name_prefix="geal-eval")

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def evaluate(self, jobs: list[tuple[np.ndarray, str, int, str | None]]) -> None:
        """Fill the task's memo for every (indices, protocol, seed, backbone) job."""
        todo: dict[tuple[Any, ...], tuple[np.ndarray, str, int, str | None]] = {}
        for idx, protocol, seed, bb in jobs:
            key = _eval_key(self.task, idx, protocol, seed, bb)
            if key not in self.task.cache:
                todo.setdefault(key, (idx, protocol, seed, key[2]))
        if self.pool is None:
            for key, job in todo.items():
                self.task.cache[key] = _compute(self.task, *job)
            return
        futures = {key: self.pool.submit(_compute, self.task, *job) for key, job in todo.items()}
        for key, fut in futures.items():
            self.task.cache[key] = fut.result()

    def loops(self, wanted: list[tuple[str, int]], budgets: Sequence[int]) -> None:
        steps = tuple(sorted({int(b) for b in budgets}))
        todo = [(m, s) for m, s in wanted if _loop_key(m, steps, s) not in self.task.cache]
        if self.pool is None:
            for m, s in todo:
                loop_run(self.task, m, steps, s)
            return
        futures = [
            self.pool.submit(
                traditional_loop,
                self.task,
                steps,
                s,
                m,
                start=random_start(self.task.n, steps[0], s),
            )
            for m, s in todo
        ]
        for fut in futures:
            _remember_loop(self.task, fut.result(), steps)


def run_curves(
    task: Task,
    strategies: Iterable[str | tuple[str, Callable[..., Any]] | Strategy],
    budgets: Sequence[int],
    seeds: Sequence[int] = (0, 1, 2),
    protocols: Sequence[str] = PROTOCOLS,
    backbones: Sequence[str] | None = None,
    *,
    workers: int = 1,
    on_row: Callable[[dict[str, Any]], Any] | None = None,
) -> list[dict[str, Any]]:
    """Accuracy of every (backbone, strategy, budget, seed, protocol).

    Args:
        task: the task (see :func:`geal.evaluate.build_task`).
        strategies: names, ``(name, callable)`` pairs or :class:`Strategy` objects.
        budgets: label counts.
        seeds: each seed reselects (seeded strategies) and retrains.
        protocols: ``cnn`` and/or ``linear``.
        backbones: backbone labels to select with (default: all of the task's).
        workers: threads that train in parallel (set ``torch.set_num_threads(1)`` for
            them to help). Selection always runs alone, one strategy at a time, so its
            timings are not disturbed by trainings. Results do not depend on it.
        on_row: called with every row as soon as it exists (progress, saving).

    Returns:
        one dict per result with the keys of :data:`ROW_KEYS`, and ``select_cpu_seconds``
        (CPU time of the process) and ``train_cpu_seconds`` (of the thread that trained;
        both steadier than wall time on a shared machine). ``select_seconds`` is the selection's wall time (for a loop:
        every earlier round's train + score + select), ``train_seconds`` the downstream
        training's (as measured when first trained). Loop rows add ``round``: wall and
        CPU seconds of the train, score and select stages of their round.
    """
    strats = [resolve_strategy(s) for s in strategies]
    for p in protocols:
        if p not in PROTOCOLS:
            raise GealError(f"unknown protocol {p!r}; use {' or '.join(PROTOCOLS)}")
    names = list(backbones) if backbones is not None else list(task.backbones)
    if not names:
        raise GealError("the task has no backbone; build it with at least one")
    for name in names:
        task.backbone(name)
    budgets = sorted({int(b) for b in budgets})
    if not budgets or budgets[0] < 1:
        raise GealError(f"budgets must be positive, got {budgets}")
    rows: list[dict[str, Any]] = []
    runner = _Runner(task, workers)
    try:
        for bname in names:
            bb = task.backbone(bname)
            for st in strats:
                plan = _plan(
                    task,
                    runner,
                    bb.bank(st.clusters) if st.loop is None else None,
                    st,
                    budgets,
                    seeds,
                )
                runner.evaluate(
                    [(sel, p, seed, bname) for _, seed, sel, _, _ in plan for p in protocols]
                )
                for budget, seed, sel, timing, extra in plan:
                    for protocol in protocols:
                        acc, t_train, c_train = _evaluate(task, sel, protocol, seed, bname)
                        row = {
                            "strategy": st.name,
                            "backbone": bname,
                            "protocol": protocol,
                            "budget": budget,
                            "seed": int(seed),
                            "accuracy": acc,
                            "classes": class_coverage(task, sel),
                            "select_seconds": timing[0],
                            "train_seconds": t_train,
                            "select_cpu_seconds": timing[1],
                            "train_cpu_seconds": c_train,
                            **extra,
                        }
                        rows.append(row)
                        _log_row(row)
                        if on_row is not None:
                            on_row(row)
    finally:
        runner.close()
    return rows


Plan = list[tuple[int, int, np.ndarray, tuple[float, float], dict[str, Any]]]


def _plan(
    task: Task, runner: _Runner, bank: Any, st: Strategy, budgets: list[int], seeds: Sequence[int]
) -> Plan:
    """Every (budget, seed) selection of one strategy with its (wall, CPU) cost."""
    plan: Plan = []
    if st.loop is not None:
        runner.loops([(st.loop, int(s)) for s in seeds], budgets)
        for seed in seeds:
            run = loop_run(task, st.loop, budgets, seed)
            for budget in budgets:
                r = next(r for r in run.rounds if r.budget == budget)
                extra = {
                    "round": {
                        "train": r.train_seconds,
                        "score": r.score_seconds,
                        "select": r.select_seconds,
                        "train_cpu": r.train_cpu,
                        "score_cpu": r.score_cpu,
                        "select_cpu": r.select_cpu,
                    }
                }
                timing = (run.seconds_before(budget), run.seconds_before(budget, cpu=True))
                plan.append((budget, int(seed), run.selections[budget], timing, extra))
        return plan
    for seed in seeds:
        for budget in budgets:
            t, c = time.perf_counter(), time.process_time()
            with keep_torch_threads():
                sel = st.select(bank, budget, int(seed))
            timing = (time.perf_counter() - t, time.process_time() - c)
            log.info("%s seed %d budget %d: selected in %.2f s", st.name, seed, budget, timing[0])
            plan.append((budget, int(seed), sel, timing, {}))
    return plan


def _log_row(row: dict[str, Any]) -> None:
    log.info(
        "%s %s %s b=%d s=%d: acc %.4f, %d classes, select %.2f s, train %.2f s",
        row["backbone"],
        row["strategy"],
        row["protocol"],
        row["budget"],
        row["seed"],
        row["accuracy"],
        row["classes"],
        row["select_seconds"],
        row["train_seconds"],
    )


def save_results(path: str | Path, rows: list[dict[str, Any]], **info: Any) -> Path:
    """Write ``{"rows": rows, **info}`` as JSON (atomically)."""
    from geal.internal.io import atomic_write_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {**info, "rows": rows})
    return path


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a file written by :func:`save_results`."""
    return json.loads(Path(path).read_text())
