"""Progress of loops over the pool: a bar on a terminal, periodic log lines elsewhere.

``progress=None`` (the default everywhere) shows a tqdm bar when stderr is a terminal
and otherwise logs one line every :data:`LOG_EVERY` seconds on the ``geal.progress``
logger (done, rate, ETA), so a job under nohup, CI or a scheduler is not silent.
``progress=True`` forces the bar, ``progress=False`` shows nothing.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import Any

log = logging.getLogger("geal.progress")

LOG_EVERY = 10.0  # seconds between log lines without a terminal


def _eta(seconds: float) -> str:
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """``with Progress(total, unit=..., desc=...) as bar: bar.update(n)``."""

    def __init__(
        self,
        total: int | None,
        *,
        unit: str = "it",
        desc: str | None = None,
        progress: bool | None = None,
        initial: int = 0,
        leave: bool = True,
        every: float = LOG_EVERY,
    ):
        self.total = total
        self.unit = unit
        self.desc = desc or unit
        self.done = initial
        self._start_done = initial
        self._every = every
        self._bar: Any = None
        self._log = False
        if progress is True or (progress is None and sys.stderr.isatty()):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, leave=leave)
        elif progress is None:
            self._log = True
        self._t0 = time.monotonic()
        self._last = self._t0

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._log:
            now = time.monotonic()
            if now - self._last >= self._every:
                self._last = now
                log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """``desc: done/total unit (pct), rate unit/s, ETA``: what a log line says."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self._t0, 1e-9)
        rate = (self.done - self._start_done) / elapsed
        text = f"{self.desc}: {self.done}"
        if self.total:
            text += f"/{self.total} {self.unit} ({100.0 * self.done / self.total:.0f}%)"
        else:
            text += f" {self.unit}"
        text += f", {rate:.1f} {self.unit}/s"
        if self.total and rate > 0:
            text += f", ETA {_eta((self.total - self.done) / rate)}"
        return text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
