"""Clips that are folders of frames (CK+, Oulu-CASIA, MMI, AFEW's aligned faces).

A folder clip holds one image per frame; frames are taken in natural name order
(``img2.png`` before ``img10.png``), every frame is kept (a folder has no frame rate to
resample), grey images become RGB by repetition, and a folder has no audio. Frames that
differ in size from the first are resized to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from msff.errors import BadClipError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def natural_key(name: str) -> list:
    """Sort key that orders digit runs by value: frame2 < frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def frame_paths(folder: str | Path) -> list[Path]:
    """The image files of a frame folder in natural order; BadClipError when there are none."""
    folder = Path(folder)
    paths = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not paths:
        raise BadClipError(f"{folder}: folder holds no image frames ({sorted(IMAGE_SUFFIXES)})")
    return sorted(paths, key=lambda p: natural_key(p.name))


def read_rgb(path: Path) -> np.ndarray:
    """One frame as (H, W, 3) uint8 RGB; BadClipError naming the file when unreadable."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise BadClipError(f"{path}: not a readable image ({exc})") from None


@dataclass
class FolderStream:
    """The frames of a folder clip in chunks of ``(n, H, W, 3)`` uint8, like a FrameStream.

    ``fps`` is 0: a folder says nothing about time. ``warnings`` and ``note`` exist so
    callers treat both kinds of stream alike.
    """

    path: Path
    paths: list[Path]
    width: int
    height: int
    chunk: int = 32
    fps: float = 0.0
    warnings: str = ""
    note: str = ""

    def __iter__(self) -> Iterator[np.ndarray]:
        resized = 0
        for start in range(0, len(self.paths), self.chunk):
            frames = []
            for path in self.paths[start : start + self.chunk]:
                frame = read_rgb(path)
                if frame.shape[:2] != (self.height, self.width):
                    resized += 1
                    frame = np.asarray(
                        Image.fromarray(frame).resize((self.width, self.height), Image.BILINEAR)
                    )
                frames.append(frame)
            yield np.stack(frames)
        if resized:
            self.note = f"{resized} of {len(self.paths)} frames resized to the first frame's size"


def frames(folder: str | Path, max_side: int | None = None, chunk: int = 32) -> FolderStream:
    """Stream the frames of a folder clip, the longest side shrunk to ``max_side``."""
    paths = frame_paths(folder)
    height, width = read_rgb(paths[0]).shape[:2]
    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    return FolderStream(Path(folder), paths, width, height, chunk)
