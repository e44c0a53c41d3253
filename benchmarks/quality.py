"""Learning curves on Fashion-MNIST: geal against its peers and the traditional loop.

    PYTHONPATH=src nice -n 10 python benchmarks/quality.py            # the published run
    PYTHONPATH=src python benchmarks/quality.py --quick --out /tmp/q  # smoke test, minutes

Selects from the training images with every strategy, from one bank per backbone
(EfficientNet-Lite0 with its ImageNet weights, and the same architecture with fixed
random weights as a control for the value of pre-training), trains the two downstream
protocols of :mod:`geal.evaluate` on every selection for several seeds, runs the
traditional train -> score -> select loop (entropy and core-set) to the same budgets,
and writes ``quality.json`` (every row, the configuration, the machine, wall times),
``quality.md`` (tables) and ``quality.png`` (curves) into ``--out``. It prints the
time ratio traditional loop / geal (extraction + selection) at every budget.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geal.evaluate import (
    CNN_RECIPE,
    LINEAR_RECIPE,
    BackboneConfig,
    Task,
    build_task,
    load_results,
    markdown_tables,
    plot_curves,
    run_curves,
    save_results,
)
from geal.pools import open_pool

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

log = logging.getLogger("quality")

DATA = "/usr/share/datasets/fashion-mnist"
BUDGETS = [10, 20, 50, 100, 200, 500, 1000, 2000]
STRATEGIES = [
    "strata",
    "kernelcover",
    "prob-k5",
    "fds-k5",
    "prob-k1",
    "fds-k1",
    "random",
    "kcenter",
    "kmeans",
    "typiclust",
    "probcover",
    "activeft",
    "loop-entropy",
    "loop-coreset",
]
CONTROL = ["strata", "kernelcover", "prob-k5", "fds-k5", "random", "kcenter", "kmeans"]
GEAL = ("prob-k5", "fds-k5", "prob-k1", "fds-k1")
MODEL = "efficientnet_lite0"


def pretrained_config(
    image_size: int = 64, stage: int | None = 3, model: str = MODEL
) -> BackboneConfig:
    """The harness's pre-trained backbone (K=1 and K=5 banks)."""
    return BackboneConfig(model, model, image_size=image_size, stage=stage, clusters=(1, 5))


def control_config(
    image_size: int = 64, stage: int | None = 3, model: str = MODEL
) -> BackboneConfig:
    """The same architecture with fixed random weights (K=5 bank), the control."""
    return BackboneConfig(
        f"{model}-random",
        model,
        weights="random",
        image_size=image_size,
        stage=stage,
        clusters=(5,),
    )


def pretrained_task(data: str, pool_size: int, cache: str | None) -> Task:
    """The harness's task with only its pre-trained backbone (the same cache as a full
    run, so the banks are extracted once)."""
    return one_backbone_task(pretrained_config(), data, pool_size, cache)


def control_task(data: str, pool_size: int, cache: str | None) -> Task:
    """The harness's task with only its random-weight control backbone."""
    return one_backbone_task(control_config(), data, pool_size, cache)


def one_backbone_task(config: BackboneConfig, data: str, pool_size: int, cache: str | None) -> Task:
    return build_task(
        open_pool(data, "idx", split="train"),
        open_pool(data, "idx", split="test"),
        [config],
        pool_size=pool_size,
        cache_dir=cache,
        progress=False,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=DATA, help="IDX folder (train-* and t10k-* files)")
    ap.add_argument("--pool-size", type=int, default=None, help="first N training images")
    ap.add_argument("--budgets", type=int, nargs="+", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--strategies", nargs="+", default=None, help="pre-trained backbone's")
    ap.add_argument("--control-strategies", nargs="*", default=None, help="random backbone's")
    ap.add_argument("--protocols", nargs="+", default=["cnn", "linear"])
    ap.add_argument(
        "--model",
        default=MODEL,
        help="pre-trained backbone (e.g. focus_vits14, the offline DINOv2 ViT-S/14)",
    )
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument(
        "--stage",
        type=int,
        default=None,
        help="CNN feature stage (default 3 for efficientnet_lite0: stride 16, a 4x4 map at "
        "64 px; its own default stage 4 gives 2x2); ViTs have none",
    )
    ap.add_argument("--name", default="quality", help="stem of the results files in --out")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training")
    ap.add_argument("--workers", type=int, default=2, help="trainings run in parallel")
    ap.add_argument("--cache", default=None, help="bank cache (default: <geal cache>/eval)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--quick", action="store_true", help="2,000 images, budgets 10 20 50, 1 seed")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="keep the finished strategies of an interrupted run (OUT/quality.partial.json)",
    )
    ap.add_argument(
        "--replot",
        action="store_true",
        help="only rewrite OUT/quality.md and the plots from OUT/quality.json",
    )
    args = ap.parse_args(argv)
    quick = args.quick
    if args.pool_size is None:
        args.pool_size = 2000 if quick else 20000
    if args.budgets is None:
        args.budgets = [10, 20, 50] if quick else BUDGETS
    if args.seeds is None:
        args.seeds = [0] if quick else [0, 1, 2]
    if args.stage is None and args.model == MODEL:
        args.stage = 3
    if args.strategies is None:
        args.strategies = STRATEGIES
    if args.control_strategies is None:
        args.control_strategies = CONTROL
    return args


def time_ratios(
    rows: list[dict[str, Any]], extract: dict[str, dict[int, dict[str, float]]], backbone: str
) -> list[dict[str, Any]]:
    """Per budget: traditional loop time / geal time (pool extraction + selection).

    Both in wall seconds and in CPU seconds (steadier on a shared machine); means over
    seeds. The loop's time at a budget is every earlier round (train + score + select).
    """

    def mean(strategy: str, budget: int, key: str) -> float | None:
        v = [
            r[key]
            for r in rows
            if r["strategy"] == strategy
            and r["budget"] == budget
            and r["backbone"] == backbone
            and r["protocol"] == rows[0]["protocol"]
        ]
        return float(np.mean(v)) if v else None

    out = []
    for b in sorted({r["budget"] for r in rows}):
        for g in ("prob-k5", "fds-k5"):
            sel, sel_cpu = mean(g, b, "select_seconds"), mean(g, b, "select_cpu_seconds")
            if sel is None or sel_cpu is None:
                continue
            ext = extract[backbone][5]
            for loop in ("loop-entropy", "loop-coreset"):
                trad, trad_cpu = (
                    mean(loop, b, "select_seconds"),
                    mean(loop, b, "select_cpu_seconds"),
                )
                if not trad or not trad_cpu:  # the random start costs nothing
                    continue
                geal, geal_cpu = ext["seconds"] + sel, ext["cpu_seconds"] + sel_cpu
                out.append(
                    {
                        "budget": b,
                        "geal": g,
                        "loop": loop,
                        "geal_seconds": geal,
                        "geal_extract_seconds": ext["seconds"],
                        "loop_seconds": trad,
                        "ratio": trad / geal if geal > 0 else float("nan"),
                        "geal_cpu_seconds": geal_cpu,
                        "geal_extract_cpu_seconds": ext["cpu_seconds"],
                        "loop_cpu_seconds": trad_cpu,
                        "cpu_ratio": trad_cpu / geal_cpu if geal_cpu > 0 else float("nan"),
                    }
                )
    return out


def ratio_table(ratios: list[dict[str, Any]]) -> str:
    lines = [
        "| budget | geal | loop | geal s (extract + select) | loop s | loop / geal "
        "| geal CPU s (extract + select) | loop CPU s | loop / geal (CPU) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ratios:
        sel = r["geal_seconds"] - r["geal_extract_seconds"]
        sel_cpu = r["geal_cpu_seconds"] - r["geal_extract_cpu_seconds"]
        lines.append(
            f"| {r['budget']} | {r['geal']} | {r['loop']} | {r['geal_seconds']:.1f} "
            f"({r['geal_extract_seconds']:.1f} + {sel:.1f}) | {r['loop_seconds']:.1f} "
            f"| {r['ratio']:.2f} | {r['geal_cpu_seconds']:.1f} "
            f"({r['geal_extract_cpu_seconds']:.1f} + {sel_cpu:.1f}) "
            f"| {r['loop_cpu_seconds']:.1f} | {r['cpu_ratio']:.2f} |"
        )
    return "\n".join(lines)


def wall_line(info: dict[str, Any]) -> str:
    """The markdown line on this run's wall time (and the interrupted run it resumed)."""
    wall = info["wall_seconds"]
    line = f"- Wall time of this run: {wall / 60:.1f} min ({wall:.0f} s)"
    resumed = info["config"].get("resumed_rows")
    if not resumed:
        return line + "."
    line += f"; it resumed an earlier run and kept that run's {resumed} finished rows"
    earlier = info.get("earlier_wall_seconds")
    if earlier:
        return line + f", which took {earlier / 60:.0f} min before."
    return line + ", whose time is not counted here."


def write_markdown(path: Path, info: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    cfg = info["config"]
    m = info["machine"]
    ext = info["extract_seconds"]
    lines = [
        "# Selection quality on Fashion-MNIST",
        "",
        "Reproduce (from the repository root, about "
        f"{(info['wall_seconds'] + info.get('earlier_wall_seconds', 0)) / 60:.0f} min on the "
        "machine below):",
        "",
        "```",
        info["command"],
        "```",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with "
        f"{m['torch_threads']} thread(s), Python {m['python']}; shared with other work, "
        "so timings are indicative.",
        wall_line(info),
        f"- Pool: the first {cfg['pool_size']:,} Fashion-MNIST training images; test: the "
        f"{cfg['test_size']:,} test images. Budgets {', '.join(map(str, cfg['budgets']))}; "
        f"seeds {', '.join(map(str, cfg['seeds']))} (each seed reselects and retrains).",
        f"- Backbones: {backbone_text(cfg)}; and, where the control strategies were run, the "
        "same architecture with fixed random weights "
        "(`-random`), a control for the value of pre-training. One bank per backbone and "
        "K (K=1 and K=5 for the pre-trained one, K=5 for the control); extraction wall "
        "time per bank: "
        + "; ".join(
            f"{b} " + ", ".join(f"K={k}: {t['seconds']:.0f} s" for k, t in v.items())
            for b, v in ext.items()
        )
        + ".",
        f"- Strategies (pre-trained backbone): {', '.join(cfg['strategies'])}. Control "
        f"backbone: {', '.join(cfg['control_strategies'])} (a subset). `prob-kK` / `fds-kK` "
        "are geal's samplers on the K-cluster bank; the global-feature baselines use the "
        "bank's global feature (mean of the stride-16 feature map); `loop-*` are the "
        "traditional loops (no backbone: their `cnn` numbers repeat in each backbone's "
        "table, their `linear` numbers probe that backbone's features of their picks).",
        "",
        "## Protocols",
        "",
        f"- `cnn`: {cnn_recipe_text()}",
        f"- `linear`: logistic regression (L-BFGS, C = {LINEAR_RECIPE.C}, at most "
        f"{LINEAR_RECIPE.max_iter} iterations) on the backbone's global features of the "
        "selected images, standardised with the pool's mean and deviation; tested on the "
        "test images' global features from the same backbone.",
        "- Traditional loop: from the same random start as `random` (first budget), every "
        "round trains a fresh `cnn` model on the labels held (that model's accuracy is the "
        "row of that budget), scores the pool with it (softmax entropy; or k-center greedy "
        "on its 64-d penultimate features, Euclidean, on geal's exact coverage engine) and "
        "adds the batch that reaches the next budget.",
        "",
        "## Time: traditional loop vs geal",
        "",
        "geal's time is the pool extraction of the K=5 bank (one pass, one thread, "
        "bfloat16 autocast where the CPU has it) plus the selection at that budget; the "
        "loop's is every round before that budget (train + score + select), i.e. what it "
        "costs to know which images to label. Neither includes the final training both "
        "need. Mean over seeds. Wall seconds depend on what else the shared machine ran; "
        "CPU seconds (of the thread or process doing the work) are steadier.",
        "",
        ratio_table(info["time_ratios"]),
        "",
        "## Results",
        "",
        "Mean ± standard deviation over seeds; the best mean per budget in bold.",
        "",
        markdown_tables(rows),
    ]
    path.write_text("\n".join(lines) + "\n")


def cnn_recipe_text() -> str:
    r = CNN_RECIPE
    return (
        f"a small CNN from scratch on the raw 28x28 grey images: three 3x3 conv blocks "
        f"({', '.join(map(str, r.widths))} channels; conv, batch norm, ReLU, 2x2 max pool), "
        f"a {r.hidden}-unit hidden layer, a linear classifier; AdamW (lr {r.lr:g}, weight decay "
        f"{r.weight_decay:g}, cosine decay), batch min(n, {r.batch}), max({r.min_steps}, "
        f"ceil({r.epochs} n / {r.batch})) steps; random shifts up to {r.shift} px and "
        "horizontal flips; weights, batches and augmentation seeded by (seed, budget)."
    )


def finished_rows(partial: Path, args: argparse.Namespace) -> tuple[list[dict[str, Any]], float]:
    """The rows of an interrupted run's strategies that finished every budget and seed,
    and the wall seconds that run (and any it resumed) had spent."""
    if not partial.exists():
        return [], 0.0
    saved = load_results(partial)
    rows = saved["rows"]
    want = len(args.budgets) * len(args.seeds) * len(args.protocols)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["budget"] in args.budgets and r["seed"] in args.seeds:
            groups.setdefault((r["backbone"], r["strategy"]), []).append(r)
    kept = [r for g in groups.values() if len(g) == want for r in g]
    log.info("resuming: %d finished rows of %d strategies", len(kept), len(kept) // want)
    return kept, float(saved.get("wall_seconds", 0.0))


def backbone_text(cfg: dict[str, Any]) -> str:
    model = cfg.get("model", MODEL)
    if cfg.get("stage") is None:
        return (
            f"`{model}` at {cfg['image_size']} px (a ViT: the last block's CLS attention "
            "chooses the second-to-last block's tokens), its published weights"
        )
    return (
        f"`{model}` at {cfg['image_size']} px, stage {cfg['stage']} "
        f"(stride {2 ** (cfg['stage'] + 1)}), ImageNet weights"
    )


def write_plots(
    out: Path, rows: list[dict[str, Any]], pool: int, test: int, name: str = "quality"
) -> list[Path]:
    """The curves, and their gain over random picks when the rows hold random's."""
    title = f"Fashion-MNIST, pool {pool:,}, test {test:,}"
    paths = [plot_curves(rows, out / f"{name}.png", title=title, highlight=("strata",))]
    if any(r["strategy"] == "random" for r in rows):
        paths.append(
            plot_curves(
                rows,
                out / f"{name}_vs_random.png",
                title=title + ": gain over random picks",
                highlight=("strata",),
                relative_to="random",
            )
        )
    return paths


def replot(out: Path, name: str = "quality") -> None:
    """Rewrite the markdown and the plots of a finished run from its JSON."""
    if not (out / f"{name}.json").is_file():
        sys.exit(f"quality.py: --replot needs {out / f'{name}.json'}; run without --replot first")
    info = load_results(out / f"{name}.json")
    rows = info.pop("rows")
    write_markdown(out / f"{name}.md", info, rows)
    plots = write_plots(out, rows, info["config"]["pool_size"], info["config"]["test_size"], name)
    print(f"rewrote {out}/{name}.md, " + ", ".join(p.name for p in plots))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.replot:
        replot(Path(args.out), args.name)
        return
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pool = open_pool(args.data, "idx", split="train")
    test = open_pool(args.data, "idx", split="test")
    model = args.model
    backbones = [pretrained_config(args.image_size, args.stage, model)]
    if args.control_strategies:
        backbones.append(control_config(args.image_size, args.stage, model))
    task = build_task(
        pool, test, backbones, pool_size=args.pool_size, cache_dir=args.cache, progress=False
    )
    extract_seconds = {name: bb.extract_seconds for name, bb in task.backbones.items()}
    log.info(
        "task ready after %.0f s: %d pool, %d test images",
        time.perf_counter() - t0,
        task.n,
        len(task.test_labels),
    )
    partial = out / f"{args.name}.partial.json"
    rows, earlier = finished_rows(partial, args) if args.resume else ([], 0.0)
    resumed = len(rows)

    def keep(row: dict[str, Any]) -> None:
        rows.append(row)
        if len(rows) % 20 == 0:
            save_results(partial, rows, wall_seconds=earlier + time.perf_counter() - t0)

    done = {(r["backbone"], r["strategy"]) for r in rows}
    todo = [s for s in args.strategies if (model, s) not in done]
    if todo:
        run_curves(task, todo, args.budgets, args.seeds, args.protocols, [model], on_row=keep)
    todo = [s for s in args.control_strategies if (f"{model}-random", s) not in done]
    if todo:
        run_curves(
            task,
            todo,
            args.budgets,
            args.seeds,
            args.protocols,
            [f"{model}-random"],
            workers=args.workers,
            on_row=keep,
        )
    wall = time.perf_counter() - t0
    ratios = time_ratios(rows, extract_seconds, model)
    given = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--resume"]
    command = "PYTHONPATH=src nice -n 10 python benchmarks/quality.py" + (
        " " + shlex.join(given) if given else ""
    )
    info = {
        "command": command,
        "machine": machine(),
        "wall_seconds": wall,
        "earlier_wall_seconds": earlier,
        "config": {
            "pool_size": task.n,
            "test_size": len(task.test_labels),
            "budgets": args.budgets,
            "seeds": args.seeds,
            "strategies": args.strategies,
            "control_strategies": args.control_strategies,
            "protocols": args.protocols,
            "model": model,
            "image_size": args.image_size,
            "stage": args.stage,
            "resumed_rows": resumed,
            "threads": args.threads,
            "workers": args.workers,
            "backbones": {name: bb.config for name, bb in task.backbones.items()},
            "cnn_recipe": CNN_RECIPE.__dict__ | {"widths": list(CNN_RECIPE.widths)},
            "linear_recipe": LINEAR_RECIPE.__dict__,
        },
        "extract_seconds": {
            b: {str(k): s for k, s in v.items()} for b, v in extract_seconds.items()
        },
        "time_ratios": ratios,
    }
    save_results(out / f"{args.name}.json", rows, **info)
    info["extract_seconds"] = extract_seconds
    write_markdown(out / f"{args.name}.md", info, rows)
    write_plots(out, rows, task.n, len(task.test_labels), args.name)
    partial.unlink(missing_ok=True)
    print(f"wall time {wall:.0f} s; results in {out}")
    print("time ratio traditional loop / geal (extraction + selection):")
    for r in ratios:
        print(
            f"  budget {r['budget']:>5} {r['loop']:>13} / {r['geal']:<7}: "
            f"wall {r['loop_seconds']:8.1f} s / {r['geal_seconds']:7.1f} s = {r['ratio']:6.2f}; "
            f"CPU {r['loop_cpu_seconds']:8.1f} s / {r['geal_cpu_seconds']:7.1f} s "
            f"= {r['cpu_ratio']:6.2f}"
        )


if __name__ == "__main__":
    main()
