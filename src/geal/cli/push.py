"""``geal push labelstudio|fiftyone``: hand a selection to a running labeling server or a
FiftyOne dataset."""

from __future__ import annotations

import argparse
import os
from typing import Any

from geal.cli.common import json_flag


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "push",
        help="hand a selection to Label Studio (import its tasks) or FiftyOne (tag the picks)",
        description="Import the tasks written by `--to labelstudio` (or labelstudio-files) into "
        "a Label Studio project, creating the project with the labeling config written "
        "beside the tasks when no project has that title.",
    )
    tools = p.add_subparsers(dest="tool", metavar="TOOL", required=True)
    ls = tools.add_parser(
        "labelstudio",
        help="Label Studio (REST API)",
        description="Import Label Studio tasks into a project of the server at URL.",
    )
    ls.add_argument("url", help="the server, e.g. http://localhost:8080")
    ls.add_argument(
        "source", help="selection directory holding labelstudio_<name>_<budget>.json, or that file"
    )
    ls.add_argument("--project", required=True, help="project id, or title (created if new)")
    ls.add_argument(
        "--token",
        default=None,
        help="API token or personal access token (default: $LABEL_STUDIO_API_KEY)",
    )
    ls.add_argument("--budget", type=int, default=None, help="which tasks file, if several")
    ls.add_argument("--name", default=None, help="which tasks file, by selection name")
    ls.add_argument(
        "--no-storage",
        action="store_true",
        help="add no local-files storage (the server is elsewhere or serves the images itself)",
    )
    ls.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output"
    )
    json_flag(ls)
    ls.set_defaults(handler=run)

    fo = tools.add_parser(
        "fiftyone",
        help="FiftyOne: tag the picks, with their rank and radius, on a dataset",
        description="Tag a selection's picks on a FiftyOne dataset, with <tag>_rank and "
        "<tag>_radius fields; the dataset is built from the pool when it does not exist.",
    )
    fo.add_argument("source", help="selection directory")
    fo.add_argument(
        "--dataset",
        default=None,
        help="dataset name (default: the pool's own for --format fiftyone pools, else "
        "geal-<selection folder>)",
    )
    fo.add_argument("--budget", type=int, default=None, help="picks to tag (default: largest)")
    fo.add_argument("--tag", default="geal", help="tag and field prefix (default geal)")
    fo.add_argument("--pool", default=None, help="the pool, if it moved")
    fo.add_argument("--format", default="auto", help="pool format when --pool is given")
    fo.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output"
    )
    json_flag(fo)
    fo.set_defaults(handler=run_fiftyone)


def run(a: argparse.Namespace) -> int:
    from geal.integrations.labelstudio import push_tasks

    res = push_tasks(
        a.url,
        a.source,
        project=a.project,
        token=a.token or os.environ.get("LABEL_STUDIO_API_KEY", ""),
        budget=a.budget,
        name=a.name,
        storage=not a.no_storage,
    )
    a.result = res.as_dict()
    verb = "created" if res.created else "into"
    print(
        f"imported {res.tasks} tasks {verb} project {res.project_id} ({res.project_title}) "
        f"at {res.url}"
    )
    for folder in res.storages:
        print(f"added local-files storage {folder}")
    return 0


def run_fiftyone(a: argparse.Namespace) -> int:
    from geal.integrations.fiftyone import tag_selection

    res = tag_selection(
        a.source, a.dataset, budget=a.budget, tag=a.tag, pool_path=a.pool, fmt=a.format
    )
    a.result = {
        "dataset": res.dataset,
        "tag": res.tag,
        "tagged": res.tagged,
        "samples": res.samples,
        "created": res.created,
    }
    made = "new " if res.created else ""
    print(
        f"tagged {res.tagged} of {res.samples} samples '{res.tag}' in {made}dataset {res.dataset}"
    )
    return 0
