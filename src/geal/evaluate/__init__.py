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

Tuning runs and reporting runs (:mod:`geal.evaluate.heldout`): a method's constants are
chosen on pools drawn from the training images and scored on a validation split carved
from them; the test images are read only by reporting runs of a fixed method version,
and the bar (:func:`bar_points`) is checked on those.

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
from geal.evaluate.heldout import (
    DATASETS,
    REPORTING,
    TUNING,
    Point,
    Split,
    bar_points,
    load_dataset,
    make_split,
    materialise,
    method_version,
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
    "DATASETS",
    "LINEAR_RECIPE",
    "PROTOCOLS",
    "REPORTING",
    "ROW_KEYS",
    "TUNING",
    "BackboneBanks",
    "BackboneConfig",
    "CNNRecipe",
    "LinearRecipe",
    "LoopRun",
    "Point",
    "Round",
    "SmallCNN",
    "Split",
    "Strategy",
    "Task",
    "aggregate",
    "bar_points",
    "build_task",
    "class_coverage",
    "evaluate_selection",
    "head",
    "linear_probe",
    "load_dataset",
    "load_results",
    "loop_run",
    "make_split",
    "markdown_tables",
    "materialise",
    "method_version",
    "plot_curves",
    "random_start",
    "resolve_strategy",
    "run_curves",
    "save_results",
    "traditional_loop",
    "train_cnn",
]
