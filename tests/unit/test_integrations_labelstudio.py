"""``geal push labelstudio`` without a server: finding the tasks, and one-line errors."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from geal.cli import main
from geal.errors import GealError
from geal.integrations.labelstudio import find_tasks_file, read_tasks, storage_folders


def _tasks(path: Path, refs: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"data": {"image": r}} for r in refs]))
    return path


def test_find_tasks_file_picks_the_one_asked(tmp_path: Path) -> None:
    a = _tasks(tmp_path / "labelstudio_geal_10.json", ["x"])
    b = _tasks(tmp_path / "labelstudio_geal_20.json", ["x"])
    (tmp_path / "labelstudio_geal_20_images").mkdir()
    assert find_tasks_file(a) == a
    assert find_tasks_file(tmp_path, budget=20) == b
    with pytest.raises(GealError, match="several tasks files"):
        find_tasks_file(tmp_path)
    with pytest.raises(GealError, match="no Label Studio tasks"):
        find_tasks_file(tmp_path, name="other")


def test_storage_folders_are_the_top_folders_under_the_document_root(tmp_path: Path) -> None:
    refs = [
        "/data/local-files/?d=train2017/a%20b.jpg",
        "/data/local-files/?d=val2017/sub/c.jpg",
        "/data/local-files/?d=train2017/d.jpg",
    ]
    tasks = json.loads(_tasks(tmp_path / "t.json", refs).read_text())
    assert storage_folders(tasks, "/srv/root") == ["/srv/root/train2017", "/srv/root/val2017"]
    assert storage_folders([{"data": {"image": "file:///x.jpg"}}], "/srv/root") == []
    with pytest.raises(GealError, match="directly in the document root"):
        storage_folders([{"data": {"image": "/data/local-files/?d=top.jpg"}}], "/srv/root")


def test_read_tasks_reads_the_config_and_its_document_root(tmp_path: Path) -> None:
    tasks_file = _tasks(tmp_path / "labelstudio_geal_1.json", ["/data/local-files/?d=a/b.jpg"])
    tasks_file.with_suffix(".xml").write_text(
        "<!-- LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=/srv/my root -->\n<View></View>\n"
    )
    tasks, config, root = read_tasks(tasks_file)
    assert len(tasks) == 1 and config is not None and "<View>" in config
    assert root == "/srv/my root"
    (tmp_path / "bad.json").write_text('{"data": 1}')
    with pytest.raises(GealError, match="not a list of Label Studio tasks"):
        read_tasks(tmp_path / "bad.json")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "token", "expected"),
    [
        ("http://127.0.0.1:{port}", "t", "cannot reach Label Studio at http://127.0.0.1:"),
        ("localhost:8080", "t", "must start with http:// or https://"),
        ("http://127.0.0.1:{port}", "", "no Label Studio token"),
    ],
)
def test_push_fails_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    token: str,
    expected: str,
) -> None:
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    _tasks(tmp_path / "labelstudio_geal_1.json", ["file:///x.jpg"])
    argv = ["push", "labelstudio", url.format(port=_closed_port()), str(tmp_path)]
    assert main([*argv, "--project", "p", "--token", token]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
