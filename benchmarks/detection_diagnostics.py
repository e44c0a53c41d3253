"""What the selection backbone sees on the composite detection pool; prints JSON.

PYTHONPATH=src nice -n 10 python benchmarks/detection_diagnostics.py \
    --out benchmarks/results/detection_diagnostics.json

Run after an older benchmarks/detection.py layout (it reads the pool and K=5 bank from
--work); benchmarks/detection.py calls :func:`diagnose` itself for every pool and
backbone it runs.
Three checks of whether the frozen backbone's features follow the objects or the
backgrounds of the composites: (1) does the spread of an image's K=5 knowledge clusters
grow with its object count; (2) does an image's nearest neighbour in global-feature
space share its background photo, or its dominant object class; (3) how much of the
backbone's saliency, and of the tokens the attention-mass filter keeps, falls inside
object boxes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from geal.backbones import create_backbone
from geal.bank import PatternBank
from geal.evaluate.composites import BACKGROUND_PHOTOS
from geal.evaluate.detection import load_instances
from geal.patterns import attention_filter
from geal.pools import open_pool


def backgrounds_of(doc: dict, n: int) -> np.ndarray:
    """Background photo per image; replays the builder's first draw for older pool files."""
    if all("background" in image for image in doc["images"]):
        by_id = {image["id"]: image["background"] for image in doc["images"]}
        return np.array([by_id[i + 1] for i in range(n)])
    seed = doc["info"]["seed"]
    return np.array(
        [np.random.default_rng([seed, i]).integers(len(BACKGROUND_PHOTOS)) for i in range(n)]
    )


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def kept_vs_objects(pool_json: str | Path, bank_dir: str | Path) -> dict | None:
    """:func:`kept_rho` of a pool file and a bank directory."""
    pool = open_pool(pool_json)
    counts = np.bincount(load_instances(pool).image, minlength=len(pool))
    return kept_rho(counts, PatternBank.open(bank_dir))


def kept_rho(counts: np.ndarray, bank: PatternBank) -> dict | None:
    """Spearman rho of each image's object count (``counts``) and the tokens its
    attention filter kept (the bank's ``kept``, what strata's ``objects`` pick reads);
    None for a bank that does not record them."""
    kept = bank.kept_tokens
    if kept is None:
        return None
    rho = spearmanr(counts, kept)
    return {
        "rho": float(rho.statistic),
        "p": float(rho.pvalue),
        "kept_mean": float(kept.mean()),
    }


def diagnose(
    pool_json: str | Path,
    bank_dir: str | Path,
    model: str,
    image_size: int,
    saliency_images: int = 128,
) -> dict:
    """The three checks of the module doc for one pool and one backbone's K=5 bank."""
    pool = open_pool(pool_json)
    doc = json.loads(Path(pool_json).read_text())
    inst = load_instances(pool)
    n = len(pool)
    counts = np.bincount(inst.image, minlength=n)
    background = backgrounds_of(doc, n)
    dominant = np.array(
        [
            np.bincount(inst.category[inst.image == i], minlength=len(inst.classes)).argmax()
            for i in range(n)
        ]
    )
    bank = PatternBank.open(bank_dir)

    # (1) spread of each image's knowledge clusters vs its object count
    spread = np.zeros(n)
    for i in range(n):
        p = unit(bank.patterns_of(i).astype(np.float32))
        if len(p) > 1:
            d = 1.0 - p @ p.T
            spread[i] = d[np.triu_indices(len(p), 1)].mean()
    rho = spearmanr(counts, spread)

    # (2) nearest neighbour in global-feature space
    g = unit(bank.global_features(np.float32))
    sim = g @ g.T
    np.fill_diagonal(sim, -np.inf)
    nn = sim.argmax(axis=1)

    def chance(labels: np.ndarray) -> float:
        f = np.bincount(labels) / labels.size
        return float(f @ f)

    # (3) saliency and kept tokens inside object boxes
    backbone = create_backbone(model, None, "cpu", image_size=image_size)
    idx = list(range(min(saliency_images, n)))
    with torch.no_grad():
        out = backbone(torch.stack([backbone.preprocess(pool.load(i)) for i in idx]))
    sal = out.saliency.float()
    keep = attention_filter(sal, 0.5)
    side = round(sal.shape[1] ** 0.5)
    cells, mass, kept = [], [], []
    for k, i in enumerate(idx):
        im = pool.load(i)
        mask = np.zeros((im.height, im.width), bool)
        for x1, y1, x2, y2 in inst.box[inst.image == i].astype(int):
            mask[y1:y2, x1:x2] = True
        grid = (
            np.asarray(
                torch.nn.functional.adaptive_avg_pool2d(
                    torch.from_numpy(mask[None].astype(np.float32)), side
                )[0]
            ).reshape(-1)
            > 0.5
        )
        cells.append(grid.mean())
        mass.append(float(sal[k].numpy()[grid].sum()))
        kept.append(float(grid[keep[k].numpy().astype(bool)].mean()))
    return {
        "pool_images": n,
        "model": model,
        "objects_vs_kept_tokens_spearman": kept_rho(counts, bank),
        "image_size": image_size,
        "objects_vs_cluster_spread_spearman": {"rho": float(rho.statistic), "p": float(rho.pvalue)},
        "global_nearest_neighbour": {
            "same_background": float((background[nn] == background).mean()),
            "same_background_chance": chance(background),
            "same_dominant_class": float((dominant[nn] == dominant).mean()),
            "same_dominant_class_chance": chance(dominant),
        },
        "saliency": {
            "images": len(idx),
            "token_grid": side,
            "tokens_in_object_boxes": float(np.mean(cells)),
            "saliency_mass_in_object_boxes": float(np.mean(mass)),
            "kept_tokens_in_object_boxes": float(np.mean(kept)),
            "kept_tokens_per_image": float(keep.sum(1).float().mean()),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--work", default="/tmp/geal-detection-benchmark")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=160)
    ap.add_argument("--saliency-images", type=int, default=128)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    work = Path(args.work)
    result = diagnose(
        work / "pool" / "annotations" / "instances_train.json",
        work / f"bank-{args.model}-{args.image_size}-k5",
        args.model,
        args.image_size,
        args.saliency_images,
    )
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
