"""Bring a selection into FiftyOne: tag the picks, with their rank and coverage radius.

:func:`tag_selection` reads a selection directory (its ``selection.json`` and ranking
csv), reopens its pool, and on a FiftyOne dataset (the pool's own, for pools read with
``--format fiftyone``; a dataset whose samples are the pool's image files; or a new one
built from the pool with :func:`dataset_from_pool`) it:

- tags the ``budget`` picks with ``tag`` (default ``geal``), removing that tag from every
  other sample first, so the tag is always exactly the selection;
- sets ``<tag>_rank`` (1 = first pick) and ``<tag>_radius`` (the coverage radius when the
  image was picked; ``None`` for samplers that do not track it) on the picks, and
  ``None`` on the other samples.

Samples are matched by sample id for FiftyOne pools, else by the image file's real path.
``fiftyone`` is imported only inside these functions; nothing here imports torch.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geal.errors import GealError
from geal.pools import Pool, open_pool
from geal.pools.fiftyone import load_dataset


@dataclass(frozen=True)
class TagResult:
    """What :func:`tag_selection` did."""

    dataset: str
    tag: str
    tagged: int
    samples: int
    created: bool


def _fo() -> Any:
    try:
        import fiftyone as fo
    except ImportError:
        raise GealError(
            "the FiftyOne integration needs the fiftyone package: pip install 'geal[fiftyone]'"
        ) from None
    return fo


def dataset_from_pool(pool: Pool, name: str, *, persistent: bool = True) -> Any:
    """A new FiftyOne dataset ``name`` with one sample per image file of ``pool``, in pool
    order, each with ``geal_id`` (the pool id) and, when the pool has labels, ``ground_truth``
    (a ``Classification``)."""
    fo = _fo()
    if any(item.path is None for item in pool):
        raise GealError(
            f"pool {pool.root} stores its images inside container files; FiftyOne needs "
            "image files (export the picks with --to labelstudio-files or cvat for files)"
        )
    if fo.dataset_exists(name):
        raise GealError(f"a FiftyOne dataset named {name!r} exists already")
    dataset = fo.Dataset(name, persistent=persistent)
    samples = []
    for item in pool:
        sample = fo.Sample(filepath=os.path.realpath(str(item.path)), geal_id=item.id)
        if item.label is not None and pool.classes:
            sample["ground_truth"] = fo.Classification(label=pool.classes[item.label])
        samples.append(sample)
    dataset.add_samples(samples, progress=False)
    return dataset


def read_picks(
    selection_dir: str | Path, budget: int | None = None
) -> tuple[dict[str, Any], list[tuple[int, float]]]:
    """(``selection.json``, [(pool index, radius)] of the picks in rank order).

    ``budget`` defaults to the selection's largest; any smaller one is the first picks
    of its ranking, except for samplers that do not nest, which keep one ranking per
    budget (only those budgets).
    """
    root = Path(selection_dir)
    try:
        meta = json.loads((root / "selection.json").read_text())
    except (OSError, ValueError) as exc:
        raise GealError(f"{root} is not a selection directory: {exc}") from None
    budgets = [int(b) for b in meta.get("budgets") or []]
    files = meta.get("rankings") or {}
    nested = meta.get("nested", True)  # else one ranking per budget: only those budgets
    if budget is None:
        budget = max(budgets) if budgets else None
    elif budgets and (budget > max(budgets) or (not nested and str(budget) not in files)):
        raise GealError(f"the selection in {root} has budgets {budgets}, not {budget}")
    key = str(budget if not nested or not budgets else max(budgets))
    ranking_csv = root / files.get(key, "ranking.csv")
    try:
        with open(ranking_csv, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise GealError(f"cannot read the ranking of {root}: {exc}") from None
    rows = rows if budget is None else rows[:budget]
    return meta, [(int(r["index"]), float(r["radius"])) for r in rows]


def tag_selection(
    selection_dir: str | Path,
    dataset: Any = None,
    *,
    budget: int | None = None,
    tag: str = "geal",
    pool_path: str | Path | None = None,
    fmt: str = "auto",
) -> TagResult:
    """Tag the picks of the selection at ``selection_dir`` on a FiftyOne dataset.

    Args:
        dataset: a ``fiftyone.Dataset``, a dataset name, or ``None``: the pool's dataset
            for FiftyOne pools, else a new persistent dataset ``geal-<selection folder>``
            built from the pool. A name that does not exist yet is built from the pool.
        budget: how many picks (default: the selection's largest budget).
        tag: the tag, and the prefix of the ``_rank`` and ``_radius`` fields.
        pool_path, fmt: the pool, if it moved since the selection.
    """
    fo = _fo()
    meta, picks = read_picks(selection_dir, budget)
    info = meta.get("pool") or {}
    if pool_path is not None:
        pool = open_pool(pool_path, fmt)
    elif info.get("root"):
        pool = open_pool(info["root"], info.get("format", "auto"), split=info.get("split"))
    else:
        raise GealError(
            f"the selection in {selection_dir} does not record its pool; pass pool_path"
        )
    if picks and max(i for i, _ in picks) >= len(pool):
        raise GealError(f"the selection picks images beyond the {len(pool)} of pool {pool.root}")
    by_id = pool.format == "fiftyone"
    created = False
    if dataset is None:
        dataset = pool.meta["dataset"] if by_id else f"geal-{Path(selection_dir).resolve().name}"
    if isinstance(dataset, str):
        if fo.dataset_exists(dataset):
            dataset = load_dataset(dataset)
        else:
            dataset, created = dataset_from_pool(pool, dataset), True
    key_field = "id" if by_id else "filepath"
    keys = [pool[i].id if by_id else os.path.realpath(str(pool[i].path)) for i, _ in picks]
    if not by_id:
        known = {os.path.realpath(p): p for p in dataset.values("filepath")}
        keys = [known.get(k, k) for k in keys]
        have = set(known.values())
    else:
        have = {str(i) for i in dataset.values("id")}
    missing = [k for k in keys if k not in have]
    if missing:
        raise GealError(
            f"{len(missing)} picks are not in FiftyOne dataset {dataset.name!r} "
            f"(first: {missing[0]}); is it the dataset of this pool?"
        )
    rank_field, radius_field = f"{tag}_rank", f"{tag}_radius"
    dataset.untag_samples(tag)
    for field in (rank_field, radius_field):
        if dataset.has_sample_field(field):
            dataset.clear_sample_field(field)
    ranks = {k: r for r, k in enumerate(keys, start=1)}
    radii = {k: (None if math.isnan(rad) else rad) for k, (_, rad) in zip(keys, picks, strict=True)}
    dataset.set_values(rank_field, ranks, key_field=key_field)
    dataset.set_values(radius_field, radii, key_field=key_field)
    if by_id:
        dataset.select(keys).tag_samples(tag)
    else:
        dataset.select_by(key_field, keys).tag_samples(tag)
    return TagResult(
        dataset=str(dataset.name),
        tag=tag,
        tagged=len(keys),
        samples=len(dataset),
        created=created,
    )
