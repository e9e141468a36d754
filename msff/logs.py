"""Logging for workflow scripts: a rule's stderr and the ``msff`` logger go to its log file."""

from __future__ import annotations

import logging
import sys
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
