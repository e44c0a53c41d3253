"""Detection benchmark: which selection makes the better detector, on composite pools.

    PYTHONPATH=src nice -n 15 python benchmarks/detection.py --resume          # full run
    PYTHONPATH=src python benchmarks/detection.py --from-json benchmarks/results/detection.json

Pools (geal.evaluate.composites.build_composite_pool): 160 px canvases holding 1-6 real
Fashion-MNIST objects (longer side 32-96 px) pasted on zoomed, turned, recoloured
crops of real scikit-image photographs, so that backgrounds repeat less and what a
frozen backbone sees depends on the objects; exact boxes. Not natural images. Two
variants: ``balanced`` classes, and ``longtail`` (most/least common class = 50). Every
pool has its own held-out set of balanced canvases from Fashion-MNIST's test split.

Two roles, on different canvases: ``tuning`` (pool seed 0, test seed 1) is where the
detector recipe, the pool design and strata's ``objects`` pick were chosen; the
learning curve runs on it, and with ``--tuning-grid`` the strategies too;
``reporting`` (pool seed 2, test seed
3) was used for nothing else, and the bar check reads only it.

Per pool and selection backbone: one forward pass builds the K=5 and K=1 banks; every
strategy selects at every budget (each budget solved afresh, so samplers that cut
cells for the budget are treated fairly); a detector with the fixed recipe of
geal.evaluate.feature_detection (torchvision FCOS, FPN and heads trained on cached
maps of the frozen ImageNet EfficientNet-Lite0, steps growing with the training set)
is trained on every selection and scored on the held-out canvases (COCO mAP@[.5:.95]
and mAP@0.5, torchmetrics). The learning curve trains the same recipe on random
subsets up to the whole pool. Diagnostics say what each selection backbone sees.

Every finished training is saved to OUT/detection.json at once; ``--resume`` keeps
the saved rows of the same configuration and runs only what is missing, so the run
can be stopped and restarted. The bar check (the default sampler at or above the best
other strategy's mean minus one standard deviation, and strictly above random, at
every budget, on mAP@0.5, reporting runs) is printed and written to detection.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine
from detection_diagnostics import diagnose, kept_vs_objects
from geal.defaults import DEFAULT_STRATEGY
from geal.evaluate.composites import build_composite_pool
from geal.evaluate.detection import detection_coverage, load_instances, size_thresholds
from geal.evaluate.feature_detection import FeatureDetectorRecipe, FeatureSet
from geal.internal.io import atomic_open
from geal.pools import open_pool

log = logging.getLogger("detection-benchmark")

# label -> (bank, sampler, its options)
STRATEGIES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "strata": ("k5", "strata", {}),
    "strata-objects": ("k5", "strata", {"pick": "objects"}),
    "prob-k5": ("k5", "prob", {}),
    "fds-k5": ("k5", "fds", {}),
    "prob-k1": ("k1", "prob", {}),
    "fds-k1": ("k1", "fds", {}),
    "kcenter": ("k5", "kcenter", {}),
    "kmeans": ("k5", "kmeans", {}),
    "typiclust": ("k5", "typiclust", {}),
    "probcover": ("k5", "probcover", {}),
    "activeft": ("k5", "activeft", {}),
    "random": ("k5", "random", {}),
}
# options of the default proposed for detection: each gets its own bar check, and is not
# a peer in the default's (it is the default with an option)
CANDIDATES = ("strata-objects",)
ROLES = {"tuning": (0, 1), "reporting": (2, 3)}  # role -> (pool seed, test seed)
VARIANTS = {"balanced": 1.0, "longtail": 50.0}  # variant -> most/least common class
SELECTION_SIZE = {"efficientnet_lite0": 160, "focus_vits14": 112}
KEPT_RHO = "objects_vs_kept_tokens_spearman"
NOTES_MARK = "<!-- notes: kept when the benchmark rewrites this file -->"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fashion", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--work", default="/tmp/geal-detection-benchmark-v2", help="pools, banks, maps")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--roles", nargs="+", default=["tuning", "reporting"], choices=list(ROLES))
    ap.add_argument("--variants", nargs="+", default=["balanced"], choices=list(VARIANTS))
    ap.add_argument("--backbones", nargs="+", default=["efficientnet_lite0"])
    ap.add_argument("--pool", type=int, default=2000, help="canvases in a pool")
    ap.add_argument("--test", type=int, default=500, help="held-out canvases")
    ap.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200, 400, 800])
    ap.add_argument(
        "--curve",
        type=int,
        nargs="+",
        default=[1600, 0],
        help="random-subset sizes beyond the budgets for the learning curve (0: the whole pool)",
    )
    ap.add_argument("--curve-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    ap.add_argument(
        "--diagnose-backbones",
        nargs="*",
        default=["focus_vits14"],
        help="selection backbones that only get the diagnostics (K=5 bank, no trainings)",
    )
    ap.add_argument("--no-diagnostics", action="store_true")
    ap.add_argument(
        "--tuning-grid",
        action="store_true",
        help="on tuning pools, also run --strategies x --budgets x --seeds (to choose a "
        "strategy's options there; the bar reads reporting rows only)",
    )
    ap.add_argument("--max-steps", type=int, default=None, help="cap the recipe (smoke tests)")
    ap.add_argument("--resume", action="store_true", help="keep the saved rows of OUT")
    ap.add_argument("--from-json", default=None, help="only redraw png and md from a json")
    return ap.parse_args(argv)


# ------------------------------------------------------------------------ preparation


def pool_files(work: Path, role: str, variant: str, args: argparse.Namespace) -> tuple[Path, Path]:
    """The pool's and its test set's annotation files (built once, cached in ``work``)."""
    root = work / f"{role}-{variant}"
    seed, test_seed = ROLES[role]
    common = {"canvas": 160, "object_size": (32, 96), "jitter_backgrounds": True}
    out = []
    for split, n, s, ratio in (
        ("train", args.pool, seed, VARIANTS[variant]),
        ("test", args.test, test_seed, 1.0),
    ):
        ann = root / "annotations" / f"instances_{split}.json"
        want = {"seed": s, "class_ratio": ratio, "jitter_backgrounds": True}
        if ann.exists():
            doc = json.loads(ann.read_text())
            if len(doc["images"]) == n and all(doc["info"].get(k) == v for k, v in want.items()):
                out.append(ann)
                continue
        objects = open_pool(args.fashion, "idx", split=split)
        out.append(
            build_composite_pool(
                root,
                n,
                objects,
                split=split,
                seed=s,
                class_ratio=ratio,
                **common,  # type: ignore[arg-type]
            )
        )
    return out[0], out[1]


def feature_sets(
    root: Path, train_json: Path, test_json: Path, recipe: FeatureDetectorRecipe
) -> tuple[FeatureSet, FeatureSet]:
    """Cached detector feature maps of a pool (plain and flipped) and its test set."""
    from geal.evaluate.detection import load_detection_set
    from geal.evaluate.feature_detection import encode_detection_set, pretrained_extractor

    key = f"maps-{recipe.backbone}-{recipe.input_size}-{'-'.join(map(str, recipe.levels))}.pt"
    path = root / key
    if path.exists():
        train, test = torch.load(path, weights_only=False)
        return train, test
    extractor = pretrained_extractor(recipe)
    size = recipe.input_size
    train = encode_detection_set(load_detection_set(open_pool(train_json), size=size), extractor)
    test = encode_detection_set(
        load_detection_set(open_pool(test_json), size=size), extractor, flip=False
    )
    torch.save((train, test), path)
    return train, test


def selection_size(model: str) -> int:
    """The input side ``model`` selects at."""
    return SELECTION_SIZE.get(model, 160)


def bank_dir(root: Path, model: str, key: str) -> Path:
    """Where a pool's ``key`` (k5, k1) bank of ``model`` lives."""
    return root / f"bank-{model}-{selection_size(model)}-{key}"


def banks(
    root: Path, train_json: Path, model: str, keys: tuple[str, ...] = ("k5", "k1")
) -> dict[str, Any]:
    from geal.extract import extract

    out = {}
    pool = open_pool(train_json)
    for key, k in (("k5", 5), ("k1", 1)):
        if key not in keys:
            continue
        out[key], summary = extract(
            pool,
            bank_dir(root, model, key),
            model=model,
            image_size=selection_size(model),
            clusters=k,
            batch_size=32,
            progress=False,
        )
        log.info("bank %s %s: %s", model, key, summary.line())
    return out


# ---------------------------------------------------------------------------- running


def row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in ("role", "variant", "backbone", "strategy", "seed", "budget"))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        write_outputs(saved, out, print_bar=True)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("geal").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    recipe = FeatureDetectorRecipe()
    if args.max_steps is not None:
        recipe = replace(
            recipe, max_steps=args.max_steps, min_steps=min(recipe.min_steps, args.max_steps)
        )
    config = {
        "pool": args.pool,
        "test": args.test,
        "recipe": asdict(recipe),
        "pool_design": {
            "canvas": 160,
            "objects_per_image": [1, 6],
            "object_size": [32, 96],
            "jitter_backgrounds": True,
            "variants_class_ratio": VARIANTS,
            "test_class_ratio": 1.0,
            "roles_pool_and_test_seeds": ROLES,
        },
        "selection_image_size": SELECTION_SIZE,
    }
    result: dict[str, Any] = {
        "benchmark": "detection",
        "command": shlex.join(["python", "benchmarks/detection.py", *sys.argv[1:]]),
        "config": config,
        "machine": machine(),
        "default_strategy": DEFAULT_STRATEGY,
        "timings": {},
        "diagnostics": {},
        "pools": {},
        "rows": [],
    }
    path = out / "detection.json"
    if args.resume and path.exists():
        saved = json.loads(path.read_text())
        if saved.get("config") == json.loads(json.dumps(config)):  # tuples saved as lists
            for k in ("rows", "diagnostics", "pools", "timings"):
                result[k] = saved.get(k, result[k])
            result["earlier_commands"] = [*saved.get("earlier_commands", []), saved["command"]]
            log.info("resuming: %d rows kept", len(result["rows"]))
        else:
            log.warning("saved %s has another configuration; starting afresh", path)
    done = {row_key(r) for r in result["rows"]}
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        with atomic_open(path, "w") as f:
            f.write(json.dumps(result, indent=1) + "\n")

    def timed(name: str, seconds: float) -> None:
        result["timings"][name] = round(result["timings"].get(name, 0.0) + seconds, 1)

    from geal.evaluate.feature_detection import train_and_score
    from geal.sampling import RunSettings, select

    work = Path(args.work)
    for role in args.roles:
        for variant in args.variants:
            tag = f"{role}-{variant}"
            t = time.perf_counter()
            train_json, test_json = pool_files(work, role, variant, args)
            timed(f"{tag} build pools s", time.perf_counter() - t)
            pool = open_pool(train_json)
            instances = load_instances(pool)
            thresholds = size_thresholds(instances.area)
            counts = np.bincount(instances.category, minlength=len(instances.classes))
            result["pools"][tag] = {
                "images": len(pool),
                "objects": int(instances.image.size),
                "objects_per_class": counts.tolist(),
                "classes": instances.classes,
                "test_images": args.test,
            }
            t = time.perf_counter()
            train_maps, test_maps = feature_sets(work / tag, train_json, test_json, recipe)
            timed(f"{tag} detector maps s", time.perf_counter() - t)

            def train(
                rows_meta: dict[str, Any],
                indices: np.ndarray,
                train_maps: FeatureSet = train_maps,
                test_maps: FeatureSet = test_maps,
                instances: Any = instances,
                thresholds: tuple[float, float] = thresholds,
                tag: str = tag,
            ) -> None:
                res = train_and_score(
                    train_maps.subset(indices), test_maps, recipe, seed=rows_meta["seed"]
                )
                cov = detection_coverage(instances, indices, thresholds)
                row = rows_meta | {
                    "map50": res["map50"],
                    "map": res["map"],
                    "per_class": res["per_class"],
                    "steps": res["steps"],
                    "train_seconds": res["train_seconds"],
                    "score_seconds": res["score_seconds"],
                    "instance_coverage": cov["instance_coverage"],
                    "objects_per_image": cov["objects_per_image"],
                    "class_size_coverage": cov["class_size_coverage"],
                }
                result["rows"].append(row)
                done.add(row_key(row))
                save()
                log.info(
                    "%s %s %s seed %d budget %d: mAP@0.5 %.3f mAP %.3f (%d steps, %.0f s)",
                    tag, row["backbone"], row["strategy"], row["seed"], row["budget"],
                    row["map50"], row["map"], row["steps"], res["train_seconds"],
                )  # fmt: skip

            # learning curve: random subsets beyond the budgets (the budgets come from
            # the grid's random rows), the recipe's own seed
            # (on tuning pools only the curve runs, at every budget too)
            n = len(pool)
            sizes = args.budgets + args.curve if role == "tuning" else args.curve
            for seed in args.curve_seeds:
                perm = np.random.default_rng([seed, 99]).permutation(n)
                for size in sizes:
                    size = n if size <= 0 or size > n else size
                    meta = {"role": role, "variant": variant, "backbone": "-",
                            "strategy": "random-curve", "seed": seed, "budget": size}  # fmt: skip
                    if row_key(meta) not in done:
                        train(meta, np.sort(perm[:size]))

            if role == "tuning" and not args.tuning_grid:
                continue
            only = [b for b in args.diagnose_backbones if b not in args.backbones]
            for model in [*only, *args.backbones]:  # the cheap diagnostics first
                t = time.perf_counter()
                bank = banks(
                    work / tag, train_json, model, ("k5",) if model in only else ("k5", "k1")
                )
                timed(f"{tag} {model} banks s", time.perf_counter() - t)
                group, k5 = f"{tag} {model}", bank_dir(work / tag, model, "k5")
                if not args.no_diagnostics and group not in result["diagnostics"]:
                    t = time.perf_counter()
                    result["diagnostics"][group] = diagnose(
                        train_json, k5, model, selection_size(model)
                    )
                    timed(f"{group} diagnostics s", time.perf_counter() - t)
                    save()
                elif (diag := result["diagnostics"].get(group)) and diag.get(KEPT_RHO) is None:
                    # saved by a run whose banks did not record the kept tokens yet
                    diag[KEPT_RHO] = kept_vs_objects(train_json, k5)
                    save()
                if model in only:
                    continue
                for seed in args.seeds:
                    for budget in args.budgets:
                        for name in args.strategies:
                            meta = {"role": role, "variant": variant, "backbone": model,
                                    "strategy": name, "seed": seed, "budget": budget}  # fmt: skip
                            if row_key(meta) in done:
                                continue
                            if name == "random" and (twin := _random_twin(result["rows"], meta)):
                                # random's picks depend on the pool and the seed, not on
                                # the bank: the same training, not run twice
                                row = twin | {"backbone": model, "shared_from": twin["backbone"]}
                                result["rows"].append(row)
                                done.add(row_key(row))
                                save()
                                continue
                            key, sampler, options = STRATEGIES[name]
                            t = time.perf_counter()
                            ranking = select(
                                bank[key], budget, sampler, seed=seed,
                                run=RunSettings(progress=False), **options,
                            )  # fmt: skip
                            meta["select_seconds"] = round(time.perf_counter() - t, 2)
                            train(meta, np.asarray(ranking.selection(budget)))
    result["command"] = shlex.join(["python", "benchmarks/detection.py", *sys.argv[1:]])
    save()
    write_outputs(result, out, print_bar=True)


def _random_twin(rows: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any] | None:
    """A trained ``random`` row of another selection backbone with the same pool, seed
    and budget (every bank of a pool has the same readable images)."""
    same = ("role", "variant", "strategy", "seed", "budget")
    for r in rows:
        shared = r["backbone"] == meta["backbone"] or "shared_from" in r
        if not shared and all(r[k] == meta[k] for k in same):
            return r
    return None


# ---------------------------------------------------------------------------- summary


def stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "n": int(a.size),
    }


def summarise(rows: list[dict[str, Any]], measure: str = "map50") -> dict[str, Any]:
    """``{group: {strategy: {budget: stats}}}``; group = "role variant backbone"."""
    out: dict[str, Any] = {}
    for r in rows:
        if r["strategy"] == "random-curve":
            continue
        g = f"{r['role']} {r['variant']} {r['backbone']}"
        out.setdefault(g, {}).setdefault(r["strategy"], {}).setdefault(r["budget"], []).append(
            r[measure]
        )
    return {
        g: {s: {b: stats(v) for b, v in sorted(per.items())} for s, per in strat.items()}
        for g, strat in out.items()
    }


def bar_check(
    summary: dict[str, Any], default: str, exclude: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Per reporting group and budget: ``default`` (the strategy checked) vs the best
    other strategy (not counting ``exclude``) and vs random."""
    checks = []
    for g, strat in summary.items():
        if not g.startswith("reporting") or default not in strat:
            continue
        for b, mine in strat[default].items():
            peers = {
                s: per[b]
                for s, per in strat.items()
                if s != default and s not in exclude and b in per
            }
            if not peers:
                continue
            best = max(peers, key=lambda s: peers[s]["mean"])
            floor = peers[best]["mean"] - peers[best]["std"]
            rand = peers.get("random")
            checks.append(
                {
                    "group": g,
                    "budget": b,
                    "default": mine["mean"],
                    "default_std": mine["std"],
                    "seeds": mine["n"],
                    "best_peer": best,
                    "best_peer_mean": peers[best]["mean"],
                    "best_peer_std": peers[best]["std"],
                    "random": None if rand is None else rand["mean"],
                    "at_or_above_best_minus_std": mine["mean"] >= floor,
                    "above_random": rand is not None and mine["mean"] > rand["mean"],
                }
            )
            checks[-1]["passes"] = (
                checks[-1]["at_or_above_best_minus_std"] and checks[-1]["above_random"]
            )
    return checks


def write_outputs(result: dict[str, Any], out: Path, *, print_bar: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    default = result.get("default_strategy", DEFAULT_STRATEGY)
    summary = summarise(result["rows"])
    bars = {default: bar_check(summary, default, CANDIDATES)}
    for cand in CANDIDATES:
        bars[cand] = bar_check(summary, cand, tuple(c for c in CANDIDATES if c != cand))
    _plot(result, summary, out / "detection.png")
    _markdown(result, summary, bars, out / "detection.md")
    if print_bar:
        for name, checks in bars.items():
            for c in checks:
                print(
                    f"bar {c['group']} budget {c['budget']}: {name} {c['default']:.3f} "
                    f"(n={c['seeds']}), best peer {c['best_peer']} {c['best_peer_mean']:.3f} "
                    f"± {c['best_peer_std']:.3f}, random "
                    f"{'-' if c['random'] is None else format(c['random'], '.3f')} -> "
                    f"{'PASS' if c['passes'] else 'FAIL'}"
                )
            if checks:
                passed = all(c["passes"] for c in checks)
                print(f"bar overall, {name}: {'PASS' if passed else 'FAIL'}")


def curve_points(result: dict[str, Any], role: str, variant: str) -> dict[int, dict[str, Any]]:
    """Random-subset learning curve: the grid's random rows plus the curve rows."""
    pts: dict[int, dict[str, list[float]]] = {}
    for r in result["rows"]:
        if r["role"] != role or r["variant"] != variant:
            continue
        if r["strategy"] == "random-curve" or (
            r["strategy"] == "random" and r["backbone"] == "efficientnet_lite0"
        ):
            p = pts.setdefault(r["budget"], {"map50": [], "map": [], "train_seconds": []})
            for k in p:
                p[k].append(r[k])
    return {
        b: {
            "map50": stats(p["map50"]),
            "map": stats(p["map"]),
            "train_seconds": float(np.mean(p["train_seconds"])),
        }
        for b, p in sorted(pts.items())
    }


def _plot(result: dict[str, Any], summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(summary)
    pairs = sorted({(r["role"], r["variant"]) for r in result["rows"]})
    rows = max(1, len(groups))  # a row per group: its two panels, the curve on the first
    fig, axes = plt.subplots(rows, 3, figsize=(5.2 * 3, 4.4 * rows), squeeze=False)
    for spare in axes[1:, 0]:
        spare.set_visible(False)
    ax = axes[0][0]
    for role, variant in pairs:
        pts = curve_points(result, role, variant)
        if not pts:
            continue
        xs = list(pts)
        for measure, marks in (("map50", "-o"), ("map", "--s")):
            ax.errorbar(
                xs,
                [pts[x][measure]["mean"] for x in xs],
                yerr=[pts[x][measure]["std"] for x in xs],
                fmt=marks,
                capsize=3,
                label=f"{role} {variant} {'mAP@0.5' if measure == 'map50' else 'mAP'}",
            )
    ax.set_xscale("log")
    xs_all = sorted({x for role, variant in pairs for x in curve_points(result, role, variant)})
    ax.minorticks_off()
    ax.set_xticks(xs_all, [str(x) for x in xs_all], fontsize=7)
    ax.set_title("learning curve, random subsets", fontsize=10)
    ax.set_xlabel("training images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    for k, g in enumerate(groups):
        strat = summary[g]
        ax1, ax2 = axes[k][1], axes[k][2]
        rand = strat.get("random")
        title2 = "mAP@0.5 minus random"
        if rand is None:  # tuning pools: the learning curve's random subsets (one order)
            role, variant = g.split()[:2]
            rand = {b: p["map50"] for b, p in curve_points(result, role, variant).items()}
            title2 = "mAP@0.5 minus random (curve)"
        colours = plt.get_cmap("tab20")
        for j, (name, per) in enumerate(strat.items()):
            bs = list(per)
            style: dict[str, Any] = {"lw": 1.2, "color": colours(j % 20), "marker": "o"}
            if name == result.get("default_strategy"):
                style.update(lw=2.8, color="crimson")
            elif name in CANDIDATES:
                style.update(lw=2.8, color="darkorange", marker="D")
            elif name == "random":
                style.update(color="black", ls="--", marker="s")
            ax1.errorbar(
                bs, [per[b]["mean"] for b in bs], yerr=[per[b]["std"] for b in bs],
                capsize=2, label=name, **style,
            )  # fmt: skip
            common = [b for b in bs if b in rand]
            ax2.plot(
                common, [per[b]["mean"] - rand[b]["mean"] for b in common], label=name, **style
            )
        budgets = sorted({b for per in strat.values() for b in per})
        for a, title in ((ax1, "mAP@0.5"), (ax2, title2)):
            a.set_xscale("log")
            a.minorticks_off()
            a.set_xticks(budgets, [str(b) for b in budgets])
            a.set_title(f"{g}: {title}", fontsize=9)
            a.set_xlabel("budget (images)")
            a.grid(alpha=0.3)
        ax2.axhline(0, color="grey", lw=0.8)
        ax1.legend(fontsize=6, ncol=2)
    fig.suptitle(
        "Composite pools of real Fashion-MNIST objects on real photos (not natural images); "
        "FCOS on frozen ImageNet EfficientNet-Lite0 maps",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _crowding(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown: per reporting group and budget, the Pearson correlation of mAP@0.5 with
    the objects per picked image, over every strategy's and seed's training."""
    by: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for r in rows:
        if r["role"] == "reporting" and r["strategy"] != "random-curve":
            g = f"{r['role']} {r['variant']} {r['backbone']}"
            by.setdefault(g, {}).setdefault(r["budget"], []).append(
                (r["objects_per_image"], r["map50"])
            )
    if not by:
        return []
    budgets = sorted({b for per in by.values() for b in per})
    out = [
        "",
        "## mAP@0.5 against objects per picked image",
        "",
        "Pearson correlation over every training of the budget (all strategies and seeds; "
        "trainings in brackets).",
        "",
        "| group | " + " | ".join(str(b) for b in budgets) + " |",
        "| --- |" + " ---: |" * len(budgets),
    ]
    for g, per in by.items():
        cells = []
        for b in budgets:
            pts = np.asarray(per.get(b, []), dtype=np.float64)
            ok = len(pts) > 2 and pts[:, 0].std() > 0 and pts[:, 1].std() > 0
            cells.append(f"{np.corrcoef(pts.T)[0, 1]:.2f} ({len(pts)})" if ok else "-")
        out.append(f"| {g} | " + " | ".join(cells) + " |")
    return out


def _markdown(
    result: dict[str, Any],
    summary: dict[str, Any],
    bars: dict[str, list[dict[str, Any]]],
    path: Path,
) -> None:
    notes = ""
    if path.exists() and NOTES_MARK in path.read_text():
        notes = path.read_text().split(NOTES_MARK, 1)[1]
    cfg = result["config"]
    r = cfg["recipe"]
    m = result["machine"]
    rows = result["rows"]
    default = result.get("default_strategy", DEFAULT_STRATEGY)
    train_s = sum(x["train_seconds"] + x["score_seconds"] for x in rows)
    lines = [
        "# Detection benchmark: composite multi-object pools",
        "",
        "```",
        f"PYTHONPATH=src nice -n 15 {result['command']}",
        *[f"# earlier, resumed: {c}" for c in result.get("earlier_commands", [])],
        "```",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores shared with other jobs, "
        f"{result.get('processes', 'one')} benchmark process(es) at a time, "
        f"torch {m['torch']} with 1 thread each. {len(rows)} trainings, "
        f"{train_s / 60:.0f} min of training and scoring in all; other stages (seconds): "
        + ", ".join(f"{k} {v}" for k, v in result["timings"].items())
        + ".",
        "",
        f"Pools: {cfg['pool']} canvases of 160 px, 1-6 real Fashion-MNIST objects each "
        "(longer side 32-96 px, pasted through their own pixel masks) on random crops of "
        "14 real scikit-image photographs that are zoomed (crop side from 40 px), turned by "
        "multiples of 90 degrees, channel-permuted and re-lit; exact boxes. Composites of "
        "real objects, not natural images. `balanced`: classes equally likely; `longtail`: "
        f"most/least common class = {cfg['pool_design']['variants_class_ratio']['longtail']:g}. "
        f"Held-out: {cfg['test']} balanced canvases per pool from the Fashion-MNIST test "
        "split. Roles: `tuning` = pool seed 0 / test seed 1, where the recipe and pool "
        "design were chosen; `reporting` = pool seed 2 / test seed 3, used for nothing "
        "else.",
        "",
        "Detector: torchvision FCOS (FPN of "
        f"{r['width']} channels, {r['head_convs']} GroupNorm convs per head) on the frozen "
        f"ImageNet EfficientNet-Lite0 maps of strides 8/16/32 at {r['input_size']} px, "
        "computed once per image and per mirrored image (flip is the only augmentation); "
        f"AdamW lr {r['lr']:g}, batch {r['batch_size']}, {r['epochs']:g} epochs clipped to "
        f"[{r['min_steps']}, {r['max_steps']}] steps, warm-up + cosine; detector seed = "
        "selection seed. Scores: torchmetrics `MeanAveragePrecision` (COCO mAP@[.5:.95]) "
        "and `iou_thresholds=[0.5]` (mAP@0.5).",
        "",
        "Selection: one forward pass of each selection backbone "
        f"({', '.join(f'{k} at {v} px' for k, v in cfg['selection_image_size'].items())}, "
        "default stage), banks with K=5 and K=1 knowledge clusters; each budget selected "
        "afresh.",
        "",
        "## Learning curve (random subsets)",
        "",
        "| pool | images | mAP@0.5 | mAP@[.5:.95] | seeds | train s (mean) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for role, variant in sorted({(x["role"], x["variant"]) for x in rows}):
        for b, p in curve_points(result, role, variant).items():
            lines.append(
                f"| {role} {variant} | {b} | {p['map50']['mean']:.3f} ± {p['map50']['std']:.3f} "
                f"| {p['map']['mean']:.3f} ± {p['map']['std']:.3f} | {p['map50']['n']} "
                f"| {p['train_seconds']:.0f} |"
            )
    maps = summarise(rows, "map")
    for g, strat in summary.items():
        budgets = sorted({b for per in strat.values() for b in per})
        seeds = sorted(
            {x["seed"] for x in rows if f"{x['role']} {x['variant']} {x['backbone']}" == g}
        )
        lines += [
            "",
            f"## {g}: mAP@0.5 (mAP@[.5:.95] below), mean ± std over seeds {seeds}",
            "",
            "| strategy | " + " | ".join(str(b) for b in budgets) + " |",
            "| --- |" + " ---: |" * len(budgets),
        ]
        for table in (strat, maps[g]):
            for name, per in table.items():
                cells = [
                    f"{per[b]['mean']:.3f} ± {per[b]['std']:.3f}"
                    + ("" if per[b]["n"] == len(seeds) else f" (n={per[b]['n']})")
                    if b in per
                    else "-"
                    for b in budgets
                ]
                label = f"**{name}**" if name == default else name
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
            if table is strat:
                lines.append("| *mAP@[.5:.95]* |" + " |" * len(budgets))
    for name, checks in bars.items():
        if not checks:
            continue
        passed = all(c["passes"] for c in checks)
        role = "the default" if name == default else f"`{default}` with an option"
        others = [c for c in bars if c != name and c != default]
        lines += [
            "",
            f"## The bar for `{name}` ({role}; reporting runs, mAP@0.5): "
            f"{'PASS' if passed else 'FAIL'}",
            "",
            f"`{name}` must be >= the best other strategy's mean minus its std, and > "
            "random, at every budget"
            + (f" (`{'`, `'.join(others)}` not counted as a peer)." if others else "."),
            "",
            f"| group | budget | seeds | {name} | best other (mean ± std) | random | >= best - std "
            "| > random |",
            "| --- | ---: | ---: | ---: | --- | ---: | --- | --- |",
        ]
        for c in checks:
            rand = "-" if c["random"] is None else f"{c['random']:.3f}"
            lines.append(
                f"| {c['group']} | {c['budget']} | {c['seeds']} | {c['default']:.3f} | "
                f"{c['best_peer']} {c['best_peer_mean']:.3f} ± {c['best_peer_std']:.3f} | "
                f"{rand} | {'yes' if c['at_or_above_best_minus_std'] else 'no'} | "
                f"{'yes' if c['above_random'] else 'no'} |"
            )
    lines += _crowding(rows)
    if result["diagnostics"]:
        lines += [
            "",
            "## What the selection backbones see",
            "",
            "| pool, backbone | NN same background (chance) | NN same dominant class (chance) "
            "| saliency mass on objects | tokens on objects | kept tokens on objects "
            "| rho(objects, K=5 spread) | rho(objects, kept tokens) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for g, d in result["diagnostics"].items():
            nn, s = d["global_nearest_neighbour"], d["saliency"]
            lines.append(
                f"| {g} | {nn['same_background']:.2f} ({nn['same_background_chance']:.2f}) | "
                f"{nn['same_dominant_class']:.2f} ({nn['same_dominant_class_chance']:.2f}) | "
                f"{s['saliency_mass_in_object_boxes']:.2f} | {s['tokens_in_object_boxes']:.2f} | "
                f"{s['kept_tokens_in_object_boxes']:.2f} | "
                f"{d['objects_vs_cluster_spread_spearman']['rho']:.2f} | "
                + (
                    f"{kv['rho']:.2f} |"
                    if (kv := d.get("objects_vs_kept_tokens_spearman"))
                    else "- |"
                )
            )
    lines += ["", "![detection](detection.png)", "", NOTES_MARK + (notes or "\n")]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
