"""``geal push labelstudio``: import a selection's tasks into a running labeling server."""

from __future__ import annotations

import argparse
import os
from typing import Any

from geal.cli.common import json_flag


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "push",
        help="import a selection's labeling tasks into a running labeling server",
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
