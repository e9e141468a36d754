"""Probe and decode clips with ffmpeg: frames straight to arrays, audio to mono float32.

The binary is the system ``ffmpeg`` when there is one, else the one the
``imageio-ffmpeg`` wheel ships, so a fresh machine needs no system package. Only
``ffmpeg`` is needed (the wheel has no ``ffprobe``): probing parses ``ffmpeg -i``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from msff import framefolders
from msff.errors import BadClipError

_exe: dict[str | None, str] = {}
# A clip that decodes to less than this share of the length its header declares is
# rejected as truncated; up to FULL_SHARE it is used, with a note. MEAD's sad.mp4, which
# decodes to 4.4 of its declared 6.3 s, is a damaged clip still worth its frames.
MIN_DECODED_SHARE = 0.5
FULL_SHARE = 0.9
# Time limits of ffmpeg calls, so a file that makes ffmpeg hang fails as a bad clip:
# reading a header; decoding audio (plus DECODE_S_PER_S per second the header declares);
# and the frame stream's longest wait for the next chunk of frames.
PROBE_TIMEOUT_S = 60.0
DECODE_TIMEOUT_S = 300.0
DECODE_S_PER_S = 2.0
STALL_TIMEOUT_S = 300.0
# Decoded frames held at once: a chunk holds at most this many bytes (or one frame), so the
# memory of a decode grows with neither the clip's length nor its resolution (32 frames of
# 4K are 800 MB, of 640x360 22 MB: small frames keep their 32-frame chunks).
CHUNK_BYTES = 64 * 2**20


def check_length(path, decoded_s: float, declared_s: float | None, what: str) -> str:
    """Raise BadClipError for a truncated clip; return a note for a short one, else ""."""
    if not declared_s or decoded_s >= FULL_SHARE * declared_s - 0.1:
        return ""
    message = f"{decoded_s:.2f} s of {what} decoded, {declared_s:.2f} s declared"
    if decoded_s < MIN_DECODED_SHARE * declared_s:
        raise BadClipError(f"{path}: truncated or damaged: {message}")
    return f"damaged file: {message}"


def ffmpeg_exe(configured: str | None = None) -> str:
    """Return the ffmpeg binary: ``configured``, else the system one, else imageio-ffmpeg's."""
    if configured in _exe:
        return _exe[configured]
    if configured:
        exe = shutil.which(configured)
        if exe is None:
            raise FileNotFoundError(f"ffmpeg={configured!r}: no such executable")
    else:
        exe = shutil.which("ffmpeg")
        if exe is None:
            import imageio_ffmpeg

            exe = imageio_ffmpeg.get_ffmpeg_exe()
    _exe[configured] = exe
    return exe


@dataclass(frozen=True)
class VideoStream:
    """The first video stream of a clip, as displayed (rotation applied)."""

    width: int
    height: int
    fps: float


@dataclass(frozen=True)
class AudioStream:
    """The first audio stream of a clip."""

    sample_rate: int
    channels: int


@dataclass(frozen=True)
class Probe:
    """What a clip holds."""

    path: str
    duration: float | None
    video: VideoStream | None
    audio: AudioStream | None


# ffmpeg's report of an input: its own lines start at fixed indents ("  Duration:",
# "  Stream #0:0", "    Metadata:", "    Side data:"); a tag's value never does (a value's
# own line breaks are continued as "      <spaces>: ..."), so anchored patterns cannot be
# fooled by a title such as "Duration: 99:00:00.00" or "Stream #0:0: Video: 8x8".
_DURATION = re.compile(r"^  Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_STREAM = re.compile(r"^  Stream #\d+:\d+")
_VIDEO = re.compile(
    r"^  Stream #\d+:\d+.*?: Video: .*?(\d{2,5})x(\d{2,5})(?:[ ,\[])"
    r".*?(?:([\d.]+) fps|([\d.]+) tbr)"
)
_AUDIO = re.compile(r"^  Stream #\d+:\d+.*?: Audio: .*?(\d+) Hz, ([^,]+)")
_SECTION = re.compile(r"^    (Metadata|Side data):\s*$")
_DISPLAY_MATRIX = re.compile(r"^      display ?matrix: rotation of (-?[\d.]+) degrees", re.I)
_ROTATE_TAG = re.compile(r"^      rotate\s*: (-?\d+)\s*$")  # older ffmpeg's stream tag
_CHANNELS = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "5.0": 5, "5.1": 6, "7.1": 8}


def _check_file(path: Path) -> None:
    if not path.exists():
        raise BadClipError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise BadClipError(f"{path}: empty file (0 bytes)")


def probe(path: str | Path, exe: str | None = None) -> Probe:
    """Return the streams of a clip; raise BadClipError naming the file when unreadable.

    A folder is a clip of image frames (``msff.framefolders``): video only, no duration.
    """
    path = Path(path)
    if path.is_dir():
        stream = framefolders.frames(path)
        return Probe(str(path), None, VideoStream(stream.width, stream.height, 0.0), None)
    _check_file(path)
    try:
        proc = subprocess.run(
            [ffmpeg_exe(exe), "-nostdin", "-hide_banner", "-i", str(path)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise BadClipError(
            f"{path}: ffmpeg could not read its header in {PROBE_TIMEOUT_S:g} s"
        ) from None
    video, audio, duration = _parse_probe(path, proc.stderr)
    if video is None and audio is None:
        raise BadClipError(f"{path}: no video or audio stream")
    return Probe(str(path), duration, video, audio)


def _parse_probe(
    path: Path, text: str
) -> tuple[VideoStream | None, AudioStream | None, float | None]:
    """The first video and audio stream and the duration in ``ffmpeg -i``'s report."""
    head = text.split("At least one output file", 1)[0]
    if not re.search(r"^Input #0", head, re.M):
        reason = head.strip().splitlines()[-1] if head.strip() else "ffmpeg cannot read it"
        raise BadClipError(f"{path}: not a readable media file ({reason})")
    duration = rotation = None
    video = audio = None
    in_video = False  # inside the block of the chosen video stream
    section = ""
    for line in head.splitlines():
        if m := _DURATION.match(line):
            h, mnt, s = m.groups()
            duration = int(h) * 3600 + int(mnt) * 60 + float(s)
        if _STREAM.match(line):
            in_video, section = False, ""
            if video is None and (m := _VIDEO.match(line)) and "attached pic" not in line:
                width, height = int(m.group(1)), int(m.group(2))
                video = VideoStream(width, height, float(m.group(3) or m.group(4)))
                in_video = True
            elif audio is None and (m := _AUDIO.match(line)):
                layout = m.group(2).strip()
                channels = _CHANNELS.get(layout.split("(")[0].strip())
                if channels is None:
                    found = re.match(r"(\d+) channels", layout)
                    channels = int(found.group(1)) if found else 1
                audio = AudioStream(int(m.group(1)), channels)
        elif m := _SECTION.match(line):
            section = m.group(1)
        elif not line.startswith("    "):  # back at the input's level: the block ended
            in_video, section = False, ""
        elif not line.startswith("      "):  # another part of the stream's block
            section = ""
        elif in_video and section == "Side data" and (m := _DISPLAY_MATRIX.match(line)):
            rotation = float(m.group(1))
        elif in_video and section == "Metadata" and rotation is None:
            if m := _ROTATE_TAG.match(line):
                rotation = float(m.group(1))
    if video is not None and rotation is not None and abs(round(rotation)) % 180 == 90:
        # ffmpeg autorotates on decode (transpose), so the displayed size is swapped.
        video = VideoStream(video.height, video.width, video.fps)
    return video, audio, duration


def output_size(
    width: int, height: int, max_side: int | None, max_pixels: int | None = None
) -> tuple[int, int]:
    """The decoded frame size: the source size shrunk to ``max_side`` and ``max_pixels``.

    Either limit None does not apply; the aspect ratio is kept and sides stay even.
    """
    scale = 1.0
    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
    if max_pixels and width * height * scale**2 > max_pixels:
        scale = (max_pixels / (width * height)) ** 0.5
    if scale == 1.0:
        return width, height
    # Rounded down to even sides, so the cap holds after rounding.
    return max(2, int(width * scale / 2) * 2), max(2, int(height * scale / 2) * 2)


def chunk_frames(chunk: int, width: int, height: int) -> int:
    """Frames per chunk: at most ``chunk``, and at most CHUNK_BYTES of RGB (at least one)."""
    return max(1, min(chunk, CHUNK_BYTES // (width * height * 3)))


@dataclass
class FrameStream:
    """Frames of one clip decoded in chunks of ``(n, H, W, 3)`` uint8 RGB arrays.

    Iterate it to decode; memory holds one chunk at a time, whatever the clip's length.
    After iteration, ``warnings`` holds what ffmpeg reported and ``note`` says when the
    clip decoded shorter than its header declares (a damaged file that is still used).
    A clip that decodes to less than half its declared length raises BadClipError.
    """

    path: Path
    width: int
    height: int
    fps: float
    duration: float | None
    chunk: int
    exe: str
    args: dict
    warnings: str = ""
    note: str = ""

    def __iter__(self) -> Iterator[np.ndarray]:
        fps = self.args.get("fps")
        n, code = yield from self._decode(fps)
        if n == 0 and fps and code == 0:
            # A clip shorter than one output frame (a single frame) gives nothing through
            # the fps filter; its frames at the source rate are all there is.
            n, code = yield from self._decode(None)
            if n:
                self.note = f"{n} frame(s) at the source rate: the clip is shorter than 1/{fps:g} s"
        reason = self.warnings.splitlines()[-1] if self.warnings else f"ffmpeg exit {code}"
        if n == 0:
            raise BadClipError(f"{self.path}: no frame could be decoded ({reason})")
        self.note = self.note or check_length(self.path, (n + 1) / self.fps, self.duration, "video")

    def _decode(self, fps: float | None):
        """Yield the chunks of one ffmpeg run; return (frames, exit code)."""
        frame_bytes = self.width * self.height * 3
        stream = ffmpeg.input(str(self.path)).video
        if fps:
            stream = stream.filter("fps", fps=fps)
        stream = stream.filter("scale", self.width, self.height)
        proc = (
            stream.output("pipe:", format="rawvideo", pix_fmt="rgb24")
            .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
            .run_async(cmd=self.exe, pipe_stdout=True, pipe_stderr=True)
        )
        # stderr is drained by a thread so a chatty ffmpeg cannot block on a full pipe.
        err_chunks: list[bytes] = []
        drain = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()))
        drain.start()
        stalled = threading.Event()

        def kill():
            stalled.set()
            proc.kill()

        n = 0
        try:
            while True:
                # Watchdog: an ffmpeg that sends no frame for STALL_TIMEOUT_S is killed.
                watchdog = threading.Timer(STALL_TIMEOUT_S, kill)
                watchdog.daemon = True
                watchdog.start()
                try:
                    buf = proc.stdout.read(frame_bytes * self.chunk)
                finally:
                    watchdog.cancel()
                if stalled.is_set():
                    break
                if not buf:
                    break
                k = len(buf) // frame_bytes
                if k:
                    n += k
                    yield np.frombuffer(buf[: k * frame_bytes], np.uint8).reshape(
                        k, self.height, self.width, 3
                    )
                if len(buf) < frame_bytes * self.chunk:
                    break
        finally:
            proc.stdout.close()
            code = proc.wait()
            drain.join()
        self.warnings = b"".join(err_chunks).decode(errors="replace").strip()
        if stalled.is_set():
            raise BadClipError(
                f"{self.path}: ffmpeg sent no frame for {STALL_TIMEOUT_S:g} s after {n} frames"
            )
        return n, code


def frames(
    path: str | Path,
    fps: float | None = None,
    max_side: int | None = None,
    chunk: int = 32,
    exe: str | None = None,
    info: Probe | None = None,
    max_pixels: int | None = None,
) -> FrameStream | framefolders.FolderStream:
    """Decode the video of a clip to RGB arrays, streamed in chunks.

    Parameters
    ----------
    path : the clip.
    fps : frames per second to keep; None keeps the source rate.
    max_side : longest side of the output frames; None keeps the source size.
    chunk : frames per array yielded at most; fewer where they would exceed CHUNK_BYTES.
    exe : ffmpeg binary (default: see ``ffmpeg_exe``).
    info : the clip's probe, when the caller has it already.
    max_pixels : a safety cap on the pixels of a decoded frame (a clip of 8K, or a corrupt
        header declaring 20000x20000, is shrunk to fit); None: no cap.

    A folder of image frames streams every frame (``fps`` does not apply) through the
    same interface (``msff.framefolders.FolderStream``).
    """
    if Path(path).is_dir():
        stream = framefolders.frames(path, max_side, chunk)
        stream.chunk = chunk_frames(chunk, stream.width, stream.height)
        return stream
    info = info or probe(path, exe)
    if info.video is None:
        raise BadClipError(f"{path}: no video stream")
    width, height = output_size(info.video.width, info.video.height, max_side, max_pixels)
    return FrameStream(
        Path(path),
        width,
        height,
        float(fps or info.video.fps),
        info.duration,
        chunk_frames(chunk, width, height),
        ffmpeg_exe(exe),
        {"fps": fps},
    )


def audio(
    path: str | Path, sample_rate: int = 16000, exe: str | None = None, info: Probe | None = None
) -> np.ndarray:
    """Decode the audio of a clip to mono float32 in [-1, 1] at ``sample_rate``."""
    info = info or probe(path, exe)
    if info.audio is None:
        raise BadClipError(f"{path}: no audio stream")
    args = (
        ffmpeg.input(str(path))
        .audio.output("pipe:", format="f32le", ac=1, ar=sample_rate)
        .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
        .compile(cmd=ffmpeg_exe(exe))
    )
    limit = DECODE_TIMEOUT_S + DECODE_S_PER_S * (info.duration or 0.0)
    try:
        proc = subprocess.run(args, capture_output=True, timeout=limit)
    except subprocess.TimeoutExpired:
        raise BadClipError(f"{path}: audio decoding took over {limit:g} s (stopped)") from None
    out = proc.stdout
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise BadClipError(
            f"{path}: audio could not be decoded ({reason[-1] if reason else 'ffmpeg failed'})"
        ) from None
    if not out:
        raise BadClipError(f"{path}: audio stream holds no samples")
    return np.frombuffer(out, np.float32).copy()


def loudest_dbfs(waveform: np.ndarray, sample_rate: int, window_s: float = 0.1) -> float:
    """RMS level of the loudest ``window_s`` window, in dB full scale (-inf: digital silence).

    The loudest window, not the whole clip: quiet speech with long pauses (RAVDESS "sad"
    is -55 dBFS over the clip) must not pass for a silent track.
    """
    n = max(1, int(sample_rate * window_s))
    k = max(1, len(waveform) // n)
    frames = np.zeros((k, n), np.float64)
    head = waveform[: k * n].astype(np.float64)
    frames.reshape(-1)[: len(head)] = head
    rms = float(np.sqrt(np.mean(np.square(frames), axis=1)).max()) if waveform.size else 0.0
    return 20 * np.log10(rms) if rms > 0 else float("-inf")
