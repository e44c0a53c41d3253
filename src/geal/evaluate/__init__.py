"""Evaluation harness: does a selection make a better downstream model, and at what cost?

Given a labelled pool and test set, select with several strategies from one bank per
backbone, train a downstream model on each selection with a fixed recipe, and report
test accuracy per budget and seed. Two protocols (see :mod:`geal.evaluate.protocols`):
``cnn`` trains a small CNN from scratch on the raw images, ``linear`` fits a logistic
regression on the frozen backbone's global features. The traditional active-learning
loop (:mod:`geal.evaluate.loop`) is evaluated the same way.

Typical use::

    from geal.evaluate import BackboneConfig, build_task, run_curves, evaluate_selection
    task = build_task(pool, test, [BackboneConfig("lite0", "efficientnet_lite0", image_size=64)])
    acc = evaluate_selection(task, indices, "cnn", seed=0)
    rows = run_curves(task, ["random", "prob", "fds-k1", ("mine", my_sampler)], [10, 100])

Needs the ``eval`` extra for the linear probe and the plots: ``pip install 'geal[eval]'``.
"""

from geal.evaluate.curves import (
    ROW_KEYS,
    Strategy,
    class_coverage,
    evaluate_selection,
    load_results,
    loop_run,
    resolve_strategy,
    run_curves,
    save_results,
)
from geal.evaluate.loop import LoopRun, Round, random_start, traditional_loop
from geal.evaluate.protocols import (
    CNN_RECIPE,
    LINEAR_RECIPE,
    PROTOCOLS,
    CNNRecipe,
    LinearRecipe,
    SmallCNN,
    linear_probe,
    train_cnn,
)
from geal.evaluate.report import aggregate, markdown_tables, plot_curves
from geal.evaluate.task import BackboneBanks, BackboneConfig, Task, build_task, head

__all__ = [
    "CNN_RECIPE",
    "LINEAR_RECIPE",
    "PROTOCOLS",
    "ROW_KEYS",
    "BackboneBanks",
    "BackboneConfig",
    "CNNRecipe",
    "LinearRecipe",
    "LoopRun",
    "Round",
    "SmallCNN",
    "Strategy",
    "Task",
    "aggregate",
    "build_task",
    "class_coverage",
    "evaluate_selection",
    "head",
    "linear_probe",
    "load_results",
    "loop_run",
    "markdown_tables",
    "plot_curves",
    "random_start",
    "resolve_strategy",
    "run_curves",
    "save_results",
    "traditional_loop",
    "train_cnn",
]
