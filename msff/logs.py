"""Logging for workflow scripts: a rule's stderr and the ``msff`` logger go to its log file."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(message)s"
# The package's logger: stages and heads write here, scripts send it to the rule's log.
log = logging.getLogger("msff")


def log_to(path: str) -> TextIO:
    """Redirect stderr and logging to ``path``; return the console's stderr."""
    console = sys.stderr
    stream = open(path, "w", buffering=1)  # noqa: SIM115 - lives as long as the job
    sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO, format=FORMAT, force=True)
    log.info("job started")  # with the last line's time, how long the job ran
    return console


class Progress:
    """Log how far long work is, with an ETA, at most every ``every_s`` seconds.

    For per-clip stages on long recordings (align_faces over an hour of frames): the job's
    log shows it moving, not one line at the end.
    """

    def __init__(self, what: str, total: int, unit: str, every_s: float = 30.0):
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.started = self.last = time.monotonic()

    def update(self, done: int) -> None:
        """Log ``done`` of ``total`` when ``every_s`` has passed since the last line."""
        now = time.monotonic()
        if now - self.last < self.every_s or not 0 < done < self.total:
            return
        self.last = now
        left = (now - self.started) / done * (self.total - done)
        log.info("%s: %d of %d %s, ETA %s", self.what, done, self.total, self.unit, duration(left))


def duration(seconds: float) -> str:
    """``seconds`` as ``42 s``, ``3.5 min`` or ``1.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
