"""PASCAL VOC image sets: ``VOC<year>/ImageSets/Main/trainval_<name>_<budget>.txt``.

The naming of the official GEAL code for VOC07+12: one file per year picked, listing
that year's selected image ids in rank order.
"""

from __future__ import annotations

import logging
from pathlib import Path

from geal.errors import GealError
from geal.export.base import check_name, register_exporter, selected_indices
from geal.internal.io import atomic_write_text
from geal.pools.base import Pool
from geal.sampling.base import Ranking

logger = logging.getLogger(__name__)


def voc_year_dirs(pool: Pool) -> dict[str, str]:
    """The pool's year folders (``{"2007": ".../VOC2007", ...}``); a VOC pool is required."""
    years = pool.meta.get("years")
    if pool.format != "voc" or not isinstance(years, dict):
        raise GealError(
            f"VOC split files need a VOC pool, but {pool.root} is a {pool.format} pool; "
            "export 'indices', 'csv' or 'ultralytics' instead"
        )
    return years


def check_annotations(pool: Pool, indices: list[int] | None = None) -> None:
    """Refuse to list images whose annotation XML is missing or broken (all of the pool's,
    or those of ``indices``): a trainer would read them as images without objects."""
    bad = pool.meta.get("bad_annotations") or {}
    if not bad:
        return
    ids = [pool[i].id for i in indices] if indices is not None else list(bad)
    hit = [i for i in ids if i in bad]
    if hit:
        raise GealError(
            f"VOC split files would list {len(hit)} image(s) whose annotation is missing or "
            f"broken ({', '.join(hit[:3])}{', ...' if len(hit) > 3 else ''}: "
            f"{bad[hit[0]]}); fix or remove their XML files first"
        )


def voc_split_name(name: str, budget: int) -> str:
    """Image-set name of a selection, as the official GEAL code names it."""
    return f"trainval_{check_name(name)}_{budget}"


@register_exporter("voc")
def export_voc(
    pool: Pool,
    ranking: Ranking,
    budget: int,
    out_dir: str | Path,
    *,
    name: str = "geal",
    final_dir: str | Path | None = None,
    into_devkit: bool = False,
) -> list[Path]:
    """Write ``VOC<year>/ImageSets/Main/trainval_<name>_<budget>.txt`` for each year picked.

    Each file lists that year's selected image ids (no year prefix) in rank order; a VOC
    trainer, or :func:`geal.pools.open_pool` with ``split="trainval_<name>_<budget>"``,
    reads them back.

    Args:
        final_dir: unused (the files name no path of their own).
        into_devkit: write into the pool's own devkit (``out_dir`` is then unused),
            refusing to replace an existing file whose content differs.
    """
    year_dirs = voc_year_dirs(pool)
    split = voc_split_name(name, budget)
    by_year: dict[str, list[str]] = {}
    chosen = selected_indices(pool, ranking, budget).tolist()
    check_annotations(pool, chosen)
    for index in chosen:
        item = pool[index]
        assert item.subset is not None  # the VOC reader sets the year on every item
        by_year.setdefault(item.subset, []).append(item.id.split("/", 1)[1])

    targets = []
    for year in sorted(by_year):
        year_dir = Path(year_dirs[year])
        base = year_dir if into_devkit else Path(out_dir) / year_dir.name
        target = base / "ImageSets" / "Main" / f"{split}.txt"
        text = "".join(f"{image_id}\n" for image_id in by_year[year])
        if into_devkit and target.exists() and target.read_text(encoding="utf-8") != text:
            raise GealError(
                f"{target} exists with a different selection; refusing to overwrite it "
                "(choose another --name or remove the file)"
            )
        targets.append((target, text))
    written = [atomic_write_text(target, text) for target, text in targets]
    logger.info("wrote VOC image set %s for years %s", split, ", ".join(sorted(by_year)))
    return written
