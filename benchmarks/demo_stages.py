"""Which EfficientNet-Lite0 stage gives the best selections on real images; prints JSON.

    PYTHONPATH=src python benchmarks/demo_stages.py [--stages 2,3,4] [--fashion 5000]

For each stage, extracts a bank (default options: tau 0.5, K 5, 224 px) of the builtin
demo pool (119 images of six sources) and of the first ``--fashion`` Fashion-MNIST
training images, then reports per pool, stage and budget:

- ``classes`` / ``sources``: distinct classes (sources) among the default sampler's picks
  (or each of ``--strategies``), mean and minimum over ``--seeds`` seeds, beside the mean
  and median of ``--random`` uniform random picks of the same size;
- ``nn_acc``: label only the picks, give every pool image the label of its nearest pick,
  and count how often that is right. Distances are measured in one fixed space for
  every stage (the mean token of stage 4, the deepest, 320 channels), so
  the number compares selections, not feature spaces; random: mean over 20 picks;
- ``knn``: leave-one-out 1-NN accuracy of the stage's own mean token, a probe of how
  well the stage separates the classes at all;
- extraction seconds (noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine


def knn_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out 1-NN accuracy with cosine similarity."""
    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    return float((labels[sim.argmax(axis=1)] == labels).mean())


def nn_accuracy(unit: np.ndarray, labels: np.ndarray, picked: np.ndarray) -> float:
    """Accuracy of labelling every image with the label of its nearest picked image."""
    nearest = (unit @ unit[picked].T).argmax(axis=1)
    return float((labels[picked][nearest] == labels).mean())


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def evaluate(
    pool: Any,
    bank: Any,
    eval_space: np.ndarray,
    budgets: list[int],
    strategies: list[str],
    seeds: int,
    randoms: int,
) -> dict[str, Any]:
    from geal.demo.coverage import coverage, random_coverages, random_pick
    from geal.sampling import RunSettings, select

    labels = np.array([item.label for item in pool])
    out: dict[str, Any] = {}
    for b in budgets:
        rand = random_coverages(pool, b, range(randoms))
        acc = [nn_accuracy(eval_space, labels, random_pick(len(pool), b, s)) for s in range(20)]
        out[str(b)] = {
            "random": {
                "classes": round(float(np.mean([c.classes for c in rand])), 2),
                "classes_median": float(np.median([c.classes for c in rand])),
                "sources": round(float(np.mean([c.sources for c in rand])), 2),
                "sources_median": float(np.median([c.sources for c in rand])),
                "nn_acc": round(float(np.mean(acc)), 4),
            }
        }
    for strategy in strategies:
        quiet = RunSettings(progress=False)
        for b in budgets:  # every budget afresh: samplers such as strata do not nest
            picks = [select(bank, b, strategy, seed=s, run=quiet).order for s in range(seeds)]
            covs = [coverage(pool, p) for p in picks]
            out[str(b)][strategy] = {
                "classes": round(float(np.mean([c.classes for c in covs])), 2),
                "classes_min": min(c.classes for c in covs),
                "sources": round(float(np.mean([c.sources for c in covs])), 2),
                "sources_min": min(c.sources for c in covs),
                "nn_acc": round(
                    float(np.mean([nn_accuracy(eval_space, labels, p) for p in picks])), 4
                ),
            }
    out["knn"] = round(knn_accuracy(bank.global_features(), labels), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", default="2,3,4")
    ap.add_argument("--fashion", type=int, default=5000, help="Fashion-MNIST images (0: skip)")
    ap.add_argument("--budgets", default="10,20,50")
    ap.add_argument("--strategies", default="", help="samplers (default: the package default)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--random", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--banks", default=None, help="keep banks here and reuse them (default: temp)")
    a = ap.parse_args()

    from geal.backbones import create_backbone
    from geal.demo.pools import open_demo_pool
    from geal.extract import extract
    from geal.sampling import DEFAULT_STRATEGY

    pools = {"builtin": open_demo_pool("builtin")}
    if a.fashion:
        pools["fashion-mnist"] = open_demo_pool("fashion-mnist", limit=a.fashion)
    budgets = [int(b) for b in a.budgets.split(",")]
    strategies = a.strategies.split(",") if a.strategies else [DEFAULT_STRATEGY]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.banks or tmp)

        made: dict[tuple[str, int], tuple[Any, float, int]] = {}

        def bank_of(name: str, stage: int) -> tuple[Any, float, int]:
            """Bank, extraction seconds (NaN if reused from --banks) and stride."""
            if (name, stage) not in made:
                backbone = create_backbone("efficientnet_lite0", device="cpu", stage=stage)
                t0 = time.perf_counter()
                bank, summary = extract(
                    pools[name],
                    root / f"{name}-{len(pools[name])}-stage{stage}",
                    backbone=backbone,
                    batch_size=a.batch_size,
                    progress=False,
                )
                seconds = time.perf_counter() - t0 if summary.extracted else float("nan")
                made[name, stage] = (bank, seconds, backbone.stride)
            return made[name, stage]

        # one fixed space to compare every stage's selections in: the last stage's mean token
        spaces = {name: unit_rows(bank_of(name, 4)[0].global_features()) for name in pools}
        for stage in (int(s) for s in a.stages.split(",")):
            for name, pool in pools.items():
                bank, seconds, stride = bank_of(name, stage)
                row = {"pool": name, "images": len(pool), "stage": stage, "stride": stride}
                row |= {"tokens": (224 // stride) ** 2, "extract_s": round(seconds, 1)}
                row |= evaluate(pool, bank, spaces[name], budgets, strategies, a.seeds, a.random)
                print(json.dumps(row), file=sys.stderr)
                results.append(row)
    print(json.dumps({"machine": machine(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
