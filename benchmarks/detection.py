"""Detection benchmark: downstream mAP@0.5 and coverage vs budget on a multi-object pool.

PYTHONPATH=src nice -n 10 python benchmarks/detection.py \
    --fashion /usr/share/datasets/fashion-mnist --out benchmarks/results

The pool is made of composites (geal.evaluate.detection.build_composite_pool): 1-6 real
Fashion-MNIST objects on crops of real scikit-image photographs, exact boxes; not
natural images. The held-out set is generated separately (other seed, objects from the
Fashion-MNIST test split). Each selection is scored by the fraction of object instances
and of (class x size) combinations it holds, and by the mAP@0.5 of a small FCOS trained
from scratch on it with a fixed recipe; the detector seed equals the selection seed, so
strategies are compared on the same initialisations. Prints the summary as JSON and
writes detection.json, detection.png and detection.md under --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from _common import machine
from geal.evaluate.composites import build_composite_pool
from geal.evaluate.detection import (
    DetectionSet,
    DetectorRecipe,
    detection_coverage,
    downstream_map,
    load_detection_set,
    load_instances,
    size_thresholds,
)
from geal.pools import open_pool
from geal.pools.base import Pool
from geal.sampling import RunSettings

log = logging.getLogger("detection-benchmark")

# label -> (bank, sampler)
STRATEGIES = {
    "geal-prob-k5": ("k5", "prob"),
    "geal-prob-k1": ("k1", "prob"),
    "kcenter": ("k5", "kcenter"),
    "random": ("k5", "random"),
}
NOTES_MARK = "<!-- notes: kept when the benchmark rewrites this file -->"

_worker: dict[str, Any] = {}


def _init_worker(train_json: str, test_json: str, size: int) -> None:
    _worker["pool"] = open_pool(train_json)
    _worker["test"] = load_detection_set(open_pool(test_json), size=size)


def _train(job: dict[str, Any]) -> dict[str, Any]:
    recipe = DetectorRecipe(**job["recipe"])
    pool: Pool = _worker["pool"]
    test: DetectionSet = _worker["test"]
    res = downstream_map(pool, job["indices"], test, recipe, seed=job["seed"])
    return {k: job[k] for k in ("strategy", "seed", "budget")} | {
        "map50": res["map50"],
        "per_class": res["per_class"],
        "train_seconds": res["train_seconds"],
    }


def _pool(root: Path, n: int, split: str, seed: int, args: argparse.Namespace) -> Path:
    ann = root / "annotations" / f"instances_{split}.json"
    want = {"seed": seed, "canvas": args.canvas, "class_ratio": args.class_ratio}
    if ann.exists():
        doc = json.loads(ann.read_text())
        if len(doc["images"]) == n and all(doc["info"].get(k) == v for k, v in want.items()):
            return ann
    objects = open_pool(args.fashion, "idx", split="train" if split == "train" else "test")
    return build_composite_pool(
        root, n, objects, split=split, seed=seed, canvas=args.canvas, class_ratio=args.class_ratio
    )


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fashion", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--work", default="/tmp/geal-detection-benchmark", help="pools and banks")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--pool", type=int, default=3000, help="canvases in the pool")
    ap.add_argument("--test", type=int, default=500, help="held-out canvases")
    ap.add_argument("--canvas", type=int, default=160)
    ap.add_argument("--class-ratio", type=float, default=8.0, help="most/least common class")
    ap.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200, 400])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=160)
    ap.add_argument("--steps", type=int, default=None, help="detector steps (default: recipe)")
    ap.add_argument("--workers", type=int, default=2, help="detector trainings in parallel")
    ap.add_argument("--no-reference", action="store_true", help="skip training on the whole pool")
    ap.add_argument(
        "--from-json", default=None, help="only redraw the png and md from a saved detection.json"
    )
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        out = Path(args.out)
        _plot(saved, out / "detection.png")
        _markdown(saved, out / "detection.md")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("geal.pools").setLevel(logging.WARNING)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    recipe = DetectorRecipe() if args.steps is None else replace(DetectorRecipe(), steps=args.steps)

    # 1. pools (cached in --work when the options match)
    work = Path(args.work)
    t = time.perf_counter()
    train_json = _pool(work / "pool", args.pool, "train", 0, args)
    test_json = _pool(work / "pool", args.test, "test", 1, args)
    timings["build_pools_s"] = round(time.perf_counter() - t, 1)
    pool = open_pool(train_json)
    instances = load_instances(pool)
    thresholds = size_thresholds(instances.area)
    counts = np.bincount(instances.image, minlength=len(pool))
    log.info("pool: %d images, %d objects", len(pool), instances.image.size)

    # 2. banks: one forward pass per image and K
    from geal.extract import extract
    from geal.sampling import select

    banks = {}
    for key, k in (("k5", 5), ("k1", 1)):
        t = time.perf_counter()
        banks[key], summary = extract(
            pool,
            work / f"bank-{args.model}-{args.image_size}-{key}",
            model=args.model,
            image_size=args.image_size,
            clusters=k,
            batch_size=64,
            progress=False,
        )
        timings[f"extract_{key}_s"] = round(time.perf_counter() - t, 1)
        log.info("bank %s: %s", key, summary.line())

    # 3. rankings and coverage (no training)
    t = time.perf_counter()
    top = max(args.budgets)
    rows: list[dict[str, Any]] = []
    jobs = []
    for name in args.strategies:
        bank_key, sampler = STRATEGIES[name]
        for seed in args.seeds:
            ranking = select(
                banks[bank_key], top, sampler, seed=seed, run=RunSettings(progress=False)
            )
            for budget in args.budgets:
                chosen = ranking.selection(budget)
                cov = detection_coverage(instances, chosen, thresholds)
                rows.append({"strategy": name, "seed": seed, "budget": budget} | cov)
                jobs.append(
                    {
                        "strategy": name,
                        "seed": seed,
                        "budget": budget,
                        "indices": chosen.tolist(),
                        "recipe": asdict(recipe),
                    }
                )
    timings["select_s"] = round(time.perf_counter() - t, 1)
    if not args.no_reference:
        jobs.append(
            {
                "strategy": "all",
                "seed": args.seeds[0],
                "budget": len(pool),
                "indices": list(range(len(pool))),
                "recipe": asdict(recipe),
            }
        )

    # 4. downstream detector per selection
    t = time.perf_counter()
    trained: dict[tuple[str, int, int], dict[str, Any]] = {}
    ctx = mp.get_context("spawn")
    init = (str(train_json), str(test_json), recipe.input_size)
    with ProcessPoolExecutor(
        args.workers, mp_context=ctx, initializer=_init_worker, initargs=init
    ) as ex:
        for n, res in enumerate(ex.map(_train, jobs), start=1):
            trained[(res["strategy"], res["seed"], res["budget"])] = res
            log.info(
                "%d/%d %s seed %d budget %d: mAP@0.5 %.3f (%.0f s)",
                n,
                len(jobs),
                res["strategy"],
                res["seed"],
                res["budget"],
                res["map50"],
                res["train_seconds"],
            )
    timings["train_s"] = round(time.perf_counter() - t, 1)
    for row in rows:
        row.update(trained[(row["strategy"], row["seed"], row["budget"])])
    reference = trained.get(("all", args.seeds[0], len(pool)))

    # 5. summary
    measures = ("map50", "instance_coverage", "class_size_coverage", "objects_per_image")
    summary: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for name in args.strategies:
        summary[name] = {}
        for budget in args.budgets:
            mine = [r for r in rows if r["strategy"] == name and r["budget"] == budget]
            summary[name][str(budget)] = {m: _stats([r[m] for r in mine]) for m in measures}
    timings["wall_s"] = round(time.perf_counter() - t_start, 1)
    result = {
        "benchmark": "detection",
        "command": " ".join(["python", "benchmarks/detection.py", *sys.argv[1:]]),
        "pool": {
            "kind": "composite of real Fashion-MNIST objects on real photo crops (not natural images)",
            "images": len(pool),
            "objects": int(instances.image.size),
            "objects_per_image": {
                str(k): int((counts == k).sum()) for k in range(counts.max() + 1)
            },
            "test_images": args.test,
            "canvas": args.canvas,
            "class_ratio": args.class_ratio,
            "size_thresholds_px2": [round(v, 1) for v in thresholds],
        },
        "selection": {"model": args.model, "image_size": args.image_size, "clusters": [5, 1]},
        "budgets": args.budgets,
        "seeds": args.seeds,
        "recipe": asdict(recipe),
        "machine": machine(),
        "timings": timings,
        "summary": summary,
        "reference_all_images": None
        if reference is None
        else {"map50": reference["map50"], "train_seconds": reference["train_seconds"]},
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "detection.json").write_text(json.dumps(result, indent=1) + "\n")
    _plot(result, out / "detection.png")
    _markdown(result, out / "detection.md")
    print(
        json.dumps({k: result[k] for k in ("pool", "timings", "summary", "reference_all_images")})
    )


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("map50", "downstream mAP@0.5 (FCOS from scratch)"),
        ("instance_coverage", "object instances covered"),
        ("class_size_coverage", "(class x size) combinations covered"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    budgets = result["budgets"]
    for ax, (measure, title) in zip(axes, panels, strict=True):
        for name, per_budget in result["summary"].items():
            mean = [per_budget[str(b)][measure]["mean"] for b in budgets]
            std = [per_budget[str(b)][measure]["std"] for b in budgets]
            ax.errorbar(budgets, mean, yerr=std, marker="o", capsize=3, label=name)
        if measure == "map50" and result["reference_all_images"] is not None:
            ax.axhline(
                result["reference_all_images"]["map50"],
                color="grey",
                ls="--",
                label=f"all {result['pool']['images']} images",
            )
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.set_xlabel("budget (images)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"Composite multi-object pool ({result['pool']['images']} canvases of real Fashion-MNIST "
        f"objects on real photos; not natural images), mean ± std over seeds {result['seeds']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(result: dict[str, Any], path: Path) -> None:
    notes = ""
    if path.exists() and NOTES_MARK in path.read_text():
        notes = path.read_text().split(NOTES_MARK, 1)[1]
    m = result["machine"]
    p = result["pool"]
    r = result["recipe"]
    lines = [
        "# Detection benchmark: composite multi-object pool",
        "",
        "```",
        f"PYTHONPATH=src nice -n 10 {result['command']}",
        "```",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores (shared with other jobs), torch {m['torch']}; "
        f"wall time {result['timings']['wall_s'] / 60:.1f} min "
        f"({', '.join(f'{k} {v}' for k, v in result['timings'].items())}).",
        "",
        f"Pool: {p['images']} composite canvases ({p['canvas']} px) holding {p['objects']} real "
        "Fashion-MNIST objects (1-6 per canvas, random scale and place, pasted through their "
        "own pixel masks) on random crops of real scikit-image photographs; classes long-tailed "
        f"(most/least common = {p['class_ratio']:g}). Composites of real objects, not natural "
        f"images. Held-out set: {p['test_images']} canvases generated separately (other seed, "
        "Fashion-MNIST test-split objects). Size buckets: box-area terciles of the pool "
        f"({p['size_thresholds_px2'][0]:.0f} and {p['size_thresholds_px2'][1]:.0f} px²).",
        "",
        f"Selection: {result['selection']['model']} at {result['selection']['image_size']} px, "
        "one forward pass; GEAL `prob` on banks with K=5 and K=1 knowledge clusters, `kcenter` "
        "on the global (mean-token) feature, `random`.",
        "",
        f"Detector: torchvision FCOS, small conv backbone + 2-level FPN ({r['width']} channels), "
        f"from scratch, {r['input_size']} px, {r['steps']} AdamW steps of {r['batch_size']} "
        f"images (lr {r['lr']:g}, warm-up + cosine), flips; the same seed as the selection. "
        "mAP@0.5: torchmetrics `MeanAveragePrecision(iou_thresholds=[0.5])`.",
        "",
        "mean ± std over seeds " + ", ".join(str(s) for s in result["seeds"]) + ":",
        "",
        "| budget | strategy | mAP@0.5 | instances covered | class x size covered | objects / image |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for b in result["budgets"]:
        for name, per_budget in result["summary"].items():
            s = per_budget[str(b)]

            def f(measure: str, digits: int = 3, s: dict[str, Any] = s) -> str:
                return f"{s[measure]['mean']:.{digits}f} ± {s[measure]['std']:.{digits}f}"

            lines.append(
                f"| {b} | {name} | {f('map50')} | {f('instance_coverage')} | "
                f"{f('class_size_coverage')} | {f('objects_per_image', 2)} |"
            )
    ref = result["reference_all_images"]
    if ref is not None:
        lines += ["", f"Same recipe on all {p['images']} images: mAP@0.5 {ref['map50']:.3f}."]
    lines += ["", "![detection](detection.png)", "", NOTES_MARK + (notes or "\n")]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
