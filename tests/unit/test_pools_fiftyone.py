"""``--format fiftyone`` takes a dataset name, not a path; without fiftyone, one line says
what to install (the reader with a real FiftyOne: tests/integration/test_fiftyone.py)."""

from __future__ import annotations

import importlib.util

import pytest

from geal.errors import PoolError
from geal.pools import FORMATS, open_pool


def test_fiftyone_names_are_not_paths() -> None:
    assert FORMATS["fiftyone"].named
    with pytest.raises(PoolError, match="does not exist"):  # auto never takes a name
        open_pool("surely-not-a-path-geal", "auto")
    with pytest.raises(PoolError, match="unknown pool format 'fiftyonee'"):
        open_pool("surely-not-a-path-geal", "fiftyonee")


@pytest.mark.skipif(
    importlib.util.find_spec("fiftyone") is not None, reason="fiftyone is installed here"
)
def test_without_fiftyone_the_reader_says_what_to_install() -> None:
    with pytest.raises(PoolError, match=r"pip install 'geal\[fiftyone\]'"):
        open_pool("my-dataset", "fiftyone")
