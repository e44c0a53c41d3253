"""Push the tasks ``--to labelstudio`` wrote into a running Label Studio, over its REST API.

Only the standard library talks to the server (``urllib``): Label Studio's own SDK pins
packages geal's other dependencies cannot share. The calls are the ones the SDK makes:

- ``GET /api/projects/`` (paginated) to find a project by title, ``GET /api/projects/ID/``
  for a numeric id, ``POST /api/projects/`` to create one with the labeling config
  written beside the tasks;
- ``POST /api/storages/localfiles/`` to add a local-files storage per folder (directly
  under the document root) that holds the selected images, when the tasks point at
  local files: Label Studio serves a local file only under a storage of the project;
- ``POST /api/projects/ID/import`` with the tasks.

The token is a legacy API token (sent as ``Authorization: Token ...``) or a personal
access token (a JWT, exchanged at ``/api/token/refresh/`` for an access token sent as
``Bearer``). Every failure (no server at the URL, a refused token, a project that does
not exist, a rejected import) is a :class:`~geal.errors.GealError` in one line.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geal.errors import GealError

logger = logging.getLogger(__name__)

LOCAL_FILES_PREFIX = "/data/local-files/?d="
_ROOT_COMMENT = re.compile(r"<!--\s*LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=(.*?)\s*-->")
_TASKS = re.compile(r"^labelstudio_(?P<name>.+)_(?P<budget>\d+)\.json$")


@dataclass
class PushResult:
    """What :func:`push_tasks` did: the project, the tasks imported, the storages added."""

    url: str
    project_id: int
    project_title: str
    created: bool
    tasks: int
    storages: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "project": self.project_id,
            "project_title": self.project_title,
            "created": self.created,
            "tasks": self.tasks,
            "storages": self.storages,
        }


class LabelStudioClient:
    """The few Label Studio REST calls geal makes, with one-line errors."""

    def __init__(self, url: str, token: str, *, timeout: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise GealError(f"Label Studio URL {url!r} must start with http:// or https://")
        if not token:
            raise GealError(
                "no Label Studio token: pass --token (Account & Settings > Access Token) "
                "or set LABEL_STUDIO_API_KEY"
            )
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._auth = f"Token {token}"
        if token.count(".") == 2:  # a personal access token (JWT): trade it for an access token
            access = self._call("POST", "/api/token/refresh/", {"refresh": token}, auth=False)
            if not isinstance(access, dict) or "access" not in access:
                raise GealError(f"Label Studio at {self.url} gave no access token for --token")
            self._auth = f"Bearer {access['access']}"

    def _call(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = _detail(exc)
            if exc.code in (401, 403):
                raise GealError(
                    f"Label Studio at {self.url} refused the token (HTTP {exc.code}"
                    f"{': ' + detail if detail else ''}); check --token"
                ) from None
            raise GealError(
                f"Label Studio at {self.url}: {method} {path} failed with HTTP {exc.code}"
                f"{': ' + detail if detail else ''}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GealError(f"cannot reach Label Studio at {self.url}: {reason}") from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise GealError(
                f"{self.url}{path} did not answer JSON; is {self.url} a Label Studio server?"
            ) from None

    def projects(self) -> list[dict[str, Any]]:
        """Every project the token sees (all pages)."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            got = self._call("GET", f"/api/projects/?page={page}&page_size=100")
            if isinstance(got, list):  # servers that do not paginate
                return out + got
            if not isinstance(got, dict) or not isinstance(got.get("results"), list):
                raise GealError(f"{self.url}/api/projects did not list projects")
            out += got["results"]
            if not got.get("next"):
                return out
            page += 1

    def project(self, project_id: int) -> dict[str, Any]:
        try:
            got = self._call("GET", f"/api/projects/{project_id}/")
        except GealError as exc:
            if "HTTP 404" in str(exc):
                raise GealError(f"Label Studio at {self.url} has no project {project_id}") from None
            raise
        return dict(got)

    def create_project(self, title: str, label_config: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"title": title}
        if label_config:
            body["label_config"] = label_config
        return dict(self._call("POST", "/api/projects/", body))

    def local_storages(self, project_id: int) -> list[dict[str, Any]]:
        got = self._call("GET", f"/api/storages/localfiles/?project={project_id}")
        return list(got or [])

    def add_local_storage(self, project_id: int, path: str) -> dict[str, Any]:
        body = {
            "project": project_id,
            "path": path,
            "use_blob_urls": False,
            "title": f"geal {Path(path).name}",
        }
        return dict(self._call("POST", "/api/storages/localfiles/", body))

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> int:
        got = self._call("POST", f"/api/projects/{project_id}/import", tasks)
        count = got.get("task_count") if isinstance(got, dict) else None
        return int(count) if count is not None else len(tasks)


def _detail(exc: urllib.error.HTTPError) -> str:
    """The server's reason for an HTTP error, shortened to one line."""
    try:
        body = exc.read().decode("utf-8", "replace")
    except OSError:
        return ""
    try:
        doc = json.loads(body)
        text = json.dumps(doc.get("validation_errors") or doc.get("detail") or doc)
    except (ValueError, AttributeError):
        text = body
    text = " ".join(text.split())
    return text[:300] + ("..." if len(text) > 300 else "")


def find_tasks_file(
    source: str | Path, *, budget: int | None = None, name: str | None = None
) -> Path:
    """The tasks file to push: ``source`` itself, or the one ``labelstudio_<name>_<budget>.json``
    in the selection directory ``source`` (``budget``/``name`` choose among several)."""
    path = Path(source)
    if path.is_file():
        return path
    if not path.is_dir():
        raise GealError(f"{path} is neither a Label Studio tasks file nor a selection directory")
    found = []
    for f in sorted(path.glob("labelstudio_*.json")):
        m = _TASKS.match(f.name)
        if m is None:
            continue
        if budget is not None and int(m["budget"]) != budget:
            continue
        if name is not None and m["name"] != name:
            continue
        found.append(f)
    if not found:
        raise GealError(
            f"no Label Studio tasks in {path}; write them with `geal export {path} --to labelstudio`"
        )
    if len(found) > 1:
        raise GealError(
            f"{path} holds several tasks files ({', '.join(f.name for f in found)}); "
            "choose one with --budget or --name"
        )
    return found[0]


def read_tasks(tasks_file: Path) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """(tasks, labeling config or None, document root or None) of a tasks file and the
    config written beside it."""
    try:
        tasks = json.loads(tasks_file.read_text())
    except (OSError, ValueError) as exc:
        raise GealError(f"cannot read Label Studio tasks {tasks_file}: {exc}") from None
    if not isinstance(tasks, list) or not all(
        isinstance(t, dict) and isinstance(t.get("data"), dict) for t in tasks
    ):
        raise GealError(f"{tasks_file} is not a list of Label Studio tasks")
    if not tasks:
        raise GealError(f"{tasks_file} holds no tasks")
    config_file = tasks_file.with_suffix(".xml")
    config = config_file.read_text() if config_file.is_file() else None
    m = _ROOT_COMMENT.search(config or "")
    return tasks, config, (m.group(1) if m else None)


def storage_folders(tasks: list[dict[str, Any]], document_root: str) -> list[str]:
    """The folders directly under ``document_root`` that hold the tasks' local files.

    Label Studio refuses a storage at the document root itself, so an image lying
    directly in it cannot be served: that is an error naming the fix.
    """
    root = Path(document_root)
    folders: set[str] = set()
    for task in tasks:
        for value in task["data"].values():
            if not (isinstance(value, str) and value.startswith(LOCAL_FILES_PREFIX)):
                continue
            rel = Path(urllib.parse.unquote(value[len(LOCAL_FILES_PREFIX) :]))
            if len(rel.parts) < 2:
                raise GealError(
                    f"image {rel} lies directly in the document root {root}, where Label Studio "
                    "serves no local files; move the images into a folder, or push with "
                    "--no-storage and serve them another way"
                )
            folders.add(str(root / rel.parts[0]))
    return sorted(folders)


def push_tasks(
    url: str,
    source: str | Path,
    *,
    project: str,
    token: str,
    budget: int | None = None,
    name: str | None = None,
    storage: bool = True,
    timeout: float = 60.0,
) -> PushResult:
    """Import the Label Studio tasks at ``source`` into ``project`` on the server at ``url``.

    Args:
        source: a tasks file written by ``--to labelstudio``/``labelstudio-files``, or
            the selection directory holding it.
        project: a project id (digits: it must exist) or title (found, else created with
            the labeling config written beside the tasks).
        token: a legacy API token or a personal access token.
        budget, name: which tasks file of a selection directory, when it holds several.
        storage: add a local-files storage for the images' folders when the tasks point
            at local files and the project lacks one (the server must run with
            ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` as the config's comment says).
    """
    tasks_file = find_tasks_file(source, budget=budget, name=name)
    tasks, config, document_root = read_tasks(tasks_file)
    folders = storage_folders(tasks, document_root) if storage and document_root else []
    client = LabelStudioClient(url, token, timeout=timeout)
    created = False
    if project.isdigit():
        found = client.project(int(project))
    else:
        matches = [p for p in client.projects() if p.get("title") == project]
        if len(matches) > 1:
            ids = ", ".join(str(p["id"]) for p in matches)
            raise GealError(f"several projects are titled {project!r} (ids {ids}); pass an id")
        if matches:
            found = matches[0]
        else:
            found, created = client.create_project(project, config), True
            logger.info("created Label Studio project %s (%s)", found["id"], project)
    project_id = int(found["id"])
    added = []
    if folders:
        have = {str(s.get("path", "")).rstrip("/") for s in client.local_storages(project_id)}
        for folder in folders:
            if folder.rstrip("/") not in have:
                client.add_local_storage(project_id, folder)
                added.append(folder)
    count = client.import_tasks(project_id, tasks)
    logger.info("imported %d tasks from %s into project %d", count, tasks_file, project_id)
    return PushResult(
        url=client.url,
        project_id=project_id,
        project_title=str(found.get("title", project)),
        created=created,
        tasks=count,
        storages=added,
    )
