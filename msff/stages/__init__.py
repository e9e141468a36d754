"""One function per workflow stage: read the inputs, write one cache file per clip.

A stage never lets one bad clip stop a run: a ``BadClipError`` (missing, empty or
corrupt file, no usable stream, an upstream stage's error) is logged with the clip's
id and written into the stage's output as its ``error`` attribute, with empty data.
Any other exception is a bug and propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from msff import cache
from msff.errors import BadClipError

log = logging.getLogger("msff")


def recording_bad_clips(clip: str, out: str | Path, work: Callable[[], None]) -> str:
    """Run ``work``; on BadClipError write an error cache to ``out``. Returns the error or ""."""
    try:
        work()
    except BadClipError as exc:
        message = f"clip {clip}: {exc}"
        log.error(message)
        cache.write_error(out, clip, message)
        return message
    return ""


def upstream_error(path: str | Path, stage: str) -> None:
    """Raise BadClipError when the cache an upstream stage wrote records an error."""
    error = cache.attrs(path).get("error", "")
    if error:
        raise BadClipError(f"{stage} failed: {error.split(': ', 1)[-1]}")
