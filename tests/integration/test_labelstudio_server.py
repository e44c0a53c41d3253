"""A real Label Studio server takes the exported tasks and serves their images.

Needs a Label Studio install in its own environment (it pins many packages); point
``GEAL_LABEL_STUDIO`` at its ``label-studio`` executable. One server per module runs on
localhost with SQLite in a temporary directory, its local-files document root a fake
COCO pool; ``label-studio-sdk`` (installed with it) talks to it from that environment's
Python, and ``geal push labelstudio`` talks to it over REST.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fakes import FakePool, make_coco
from geal.cli import main
from geal.export import EXPORTERS
from geal.pools import open_pool
from geal.sampling.base import Ranking

pytestmark = pytest.mark.slow

TOKEN = "0123456789abcdef0123456789abcdef01234567"

_CLIENT = """
import json, sys
from label_studio_sdk import LabelStudio
url, token, config, tasks_file, image_dir = sys.argv[1:6]
client = LabelStudio(base_url=url, api_key=token)
project = client.projects.create(title="geal", label_config=open(config).read())
# local files are served only under a local-files storage of the project
client.import_storage.local.create(project=project.id, path=image_dir, use_blob_urls=False)
tasks = json.load(open(tasks_file))
client.projects.import_tasks(id=project.id, request=tasks)
found = sorted(client.tasks.list(project=project.id), key=lambda t: t.meta["geal_rank"])
import httpx
first = httpx.get(url + found[0].data["image"], headers={"Authorization": "Token " + token})
print(json.dumps({
    "count": len(found),
    "images": [t.data["image"] for t in found],
    "meta": [t.meta for t in found],
    "predictions": [t.total_predictions for t in found],
    "first_status": first.status_code,
    "first_bytes": first.content.hex(),
}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"label-studio exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(2)
    pytest.fail(f"label-studio did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@dataclass
class Server:
    url: str
    python: Path
    fake: FakePool


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A Label Studio server whose local-files document root is a 5-image COCO pool."""
    server = os.environ.get("GEAL_LABEL_STUDIO")
    if not server:
        pytest.skip(
            "GEAL_LABEL_STUDIO is unset (path of a label-studio executable in its own venv)"
        )
    tmp = tmp_path_factory.mktemp("labelstudio")
    fake = make_coco(tmp / "coco", 5)
    port = _free_port()
    url = f"http://localhost:{port}"
    data = tmp / "ls-data"
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(fake.path.absolute()),
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
    }
    log = tmp / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [server, "start", "--no-browser", "--host", "localhost", "--port", str(port),
             "--data-dir", str(data), "--username", "geal@example.org",
             "--password", "geal-test-password", "--user-token", TOKEN],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_until_up(url, proc, log, timeout=300)
        yield Server(url=url, python=Path(server).parent / "python", fake=fake)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _get(url: str, path: str) -> bytes:
    request = urllib.request.Request(url + path, headers={"Authorization": "Token " + TOKEN})
    with urllib.request.urlopen(request, timeout=60) as r:
        return bytes(r.read())


def _tasks_of(url: str, project: int) -> list[dict[str, Any]]:
    got = json.loads(_get(url, f"/api/tasks/?project={project}&page_size=100"))
    tasks = got["tasks"] if isinstance(got, dict) else got
    return sorted(tasks, key=lambda t: t["id"])


def test_label_studio_imports_the_tasks_and_serves_their_images(
    label_studio: Server, tmp_path: Path
) -> None:
    fake = label_studio.fake
    pool = open_pool(fake.path)
    order = [3, 0, 4]
    ranking = Ranking(order=np.array(order), radius=np.zeros(3), strategy="fds", seed=0)
    tasks_file, config, *_ = EXPORTERS["labelstudio"](pool, ranking, 3, tmp_path / "out")
    url = label_studio.url
    script = tmp_path / "client.py"
    script.write_text(_CLIENT)
    run = subprocess.run(
        [str(label_studio.python), str(script), url, TOKEN, str(config), str(tasks_file),
         str(Path(str(pool[3].path)).parent)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])

    written = json.loads(tasks_file.read_text())
    assert got["count"] == 3
    assert got["images"] == [t["data"]["image"] for t in written]
    assert [m["pool_index"] for m in got["meta"]] == order
    assert got["predictions"] == [1, 1, 1]
    assert got["first_status"] == 200
    assert bytes.fromhex(got["first_bytes"]) == Path(str(pool[3].path)).read_bytes()


def test_geal_push_creates_the_project_adds_storage_and_imports(
    label_studio: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = label_studio.fake, label_studio.url
    pool = open_pool(fake.path)
    order = [2, 1]
    ranking = Ranking(order=np.array(order), radius=np.zeros(2), strategy="fds", seed=0)
    sel = tmp_path / "sel"
    tasks_file, *_ = EXPORTERS["labelstudio"](pool, ranking, 2, sel)

    argv = ["push", "labelstudio", url, str(sel), "--project", "geal push", "--token", TOKEN]
    assert main([*argv, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["created"] is True and first["tasks"] == 2
    assert first["storages"] == [str(Path(str(pool[2].path)).parent)]
    project = first["project"]
    detail = json.loads(_get(url, f"/api/projects/{project}/"))
    assert detail["title"] == "geal push"
    assert "RectangleLabels" in detail["label_config"]
    tasks = _tasks_of(url, project)
    assert [t["meta"]["pool_index"] for t in tasks] == order
    assert [t["data"]["image"] for t in tasks] == [
        t["data"]["image"] for t in json.loads(tasks_file.read_text())
    ]
    # the storage geal added lets the server serve the pushed images
    assert _get(url, tasks[0]["data"]["image"]) == Path(str(pool[2].path)).read_bytes()

    # again, by id: the same project, no second storage, the tasks added once more
    assert main([*argv[:5], str(project), "--token", TOKEN, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["project"], again["created"], again["storages"]) == (project, False, [])
    assert len(_tasks_of(url, project)) == 4


def test_geal_push_says_in_one_line_what_is_wrong(
    label_studio: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pool = open_pool(label_studio.fake.path)
    ranking = Ranking(order=np.array([0]), radius=np.zeros(1), strategy="fds", seed=0)
    EXPORTERS["labelstudio"](pool, ranking, 1, tmp_path)
    url = label_studio.url
    cases = {
        "refused the token (HTTP 401": ["--project", "x", "--token", "not-the-token"],
        "has no project 98765": ["--project", "98765", "--token", TOKEN],
    }
    for expected, extra in cases.items():
        capsys.readouterr()
        assert main(["push", "labelstudio", url, str(tmp_path), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
