"""Make a provider that stops answering visible: while jobs run, a watcher thread notices when no job has finished
for a while, says so in the progress bar and, at longer intervals, in the log."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)


class StallWatch:
    """Watch batches of jobs (``with watch.running(): ...``); call :meth:`progressed` whenever a job finishes.

    Args:
        what: What the jobs are, for the messages (``"target"``, ``"judge"``...).
        bar: A tqdm bar whose postfix shows the stall (may be disabled or None).
        after: Seconds without a finished job before the bar says so.
        log_every: Seconds between log warnings while the stall lasts (the first one after this long, too).
        poll: How often the watcher looks.
    """

    def __init__(
        self, what: str, bar: Any = None, *, after: float = 20.0, log_every: float = 60.0, poll: float = 1.0
    ) -> None:
        self.what = what
        self.bar = bar
        self.after = after
        self.log_every = log_every
        self.poll = poll
        self.warnings = 0
        self._last = time.monotonic()
        self._logged_at = 0.0
        self._shown = False
        self._stop = threading.Event()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Watch while the block runs jobs (the clock starts at entry)."""
        self._last = time.monotonic()
        self._logged_at = 0.0
        self._stop.clear()
        thread = threading.Thread(target=self._watch, name=f"picaco-stall-watch-{self.what}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join(timeout=5)
            self.progressed()

    def progressed(self) -> None:
        """A job finished: the stall, if any, is over."""
        self._last = time.monotonic()
        self._logged_at = 0.0
        if self._shown and self.bar is not None:
            self.bar.set_postfix_str("", refresh=True)
            self._shown = False

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            waited = time.monotonic() - self._last
            if waited < self.after:
                continue
            if self.bar is not None:
                self.bar.set_postfix_str(f"no {self.what} answer for {waited:.0f} s", refresh=True)
                self._shown = True
            if waited - self._logged_at >= self.log_every:
                self._logged_at = waited
                self.warnings += 1
                logger.warning(
                    "No %s call has finished for %.0f s: the provider may be stalled or overloaded. Each request "
                    "gives up after its request timeout (--request-timeout) and is retried; Ctrl-C stops the run "
                    "and the same command resumes it.",
                    self.what,
                    waited,
                )
