"""One function per workflow stage: read the inputs, write one cache file per clip.

A stage never lets one bad clip stop a run: a ``BadClipError`` (missing, empty or
corrupt file, no usable stream, an upstream stage's error) is logged with the clip's
id and written into the stage's output as its ``error`` attribute, with empty data.
Any other ``Exception`` raised while working on one clip (a decoder's ValueError, a
``MemoryError``, Pillow's decompression-bomb error) is recorded the same way, with its
type named, and logged with its traceback: a clip never sinks the run. Only
KeyboardInterrupt and SystemExit propagate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from msff import cache
from msff.errors import BadClipError

log = logging.getLogger("msff")


def recording_bad_clips(
    clip: str, out: str | Path, work: Callable[[], None], stage: str | None = None
) -> str:
    """Run ``work``; on any Exception write an error cache to ``out``. Returns the error or "".

    A BadClipError reads ``clip X: <message>``; any other exception reads
    ``clip X: <stage>: <Type>: <message>`` (``stage`` defaults to ``work``'s enclosing
    function) and its traceback goes to the log.
    """
    try:
        work()
    except BadClipError as exc:
        message = f"clip {clip}: {exc}"
        log.error(message)
        cache.write_error(out, clip, message)
        return message
    except Exception as exc:  # noqa: BLE001 - any per-clip failure is recorded, see above
        stage = stage or work.__qualname__.split(".", 1)[0]
        message = f"clip {clip}: {stage}: {type(exc).__name__}: {exc}"
        log.exception(message)
        cache.write_error(out, clip, message)
        return message
    return ""


def upstream_error(path: str | Path, stage: str) -> None:
    """Raise BadClipError when the cache an upstream stage wrote records an error."""
    error = cache.attrs(path).get("error", "")
    if error:
        raise BadClipError(f"{stage} failed: {error.split(': ', 1)[-1]}")
