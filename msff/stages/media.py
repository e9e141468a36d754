"""Stages extract_frames and extract_audio: a clip decoded to its frames and audio caches."""

from __future__ import annotations

from pathlib import Path

from msff import cache, media
from msff.stages import log, recording_bad_clips


def extract_frames(
    clip: str,
    source: str,
    out: str | Path,
    fps: float | None,
    max_side: int | None,
    ffmpeg: str | None = None,
    max_pixels: int | None = None,
) -> str:
    """Decode ``source`` at ``fps`` (None: source rate), longest side ``max_side``.

    ``max_pixels`` caps a frame's pixels (see ``msff.media.frames``).
    """

    def work():
        info = media.probe(source, ffmpeg)
        stream = media.frames(
            source, fps=fps, max_side=max_side, exe=ffmpeg, info=info, max_pixels=max_pixels
        )
        with cache.atomic_h5(out, clip) as f:
            writer = cache.FrameWriter(f, stream.height, stream.width)
            for chunk in stream:
                writer.append(chunk)
            f.attrs.update(
                fps=stream.fps,
                source_fps=info.video.fps,
                source_width=info.video.width,
                source_height=info.video.height,
            )
            if stream.warnings:
                log.warning("clip %s: ffmpeg: %s", clip, stream.warnings)
            if stream.note:
                f.attrs["note"] = stream.note
                log.warning("clip %s: %s", clip, stream.note)
            log.info(
                "clip %s: %d frames of %dx%d at %.3g fps",
                clip,
                len(writer.dataset),
                stream.width,
                stream.height,
                stream.fps,
            )

    return recording_bad_clips(clip, out, work)


def extract_audio(
    clip: str,
    source: str,
    out: str | Path,
    sample_rate: int,
    silence_dbfs: float,
    ffmpeg: str | None = None,
) -> str:
    """Decode the audio of ``source`` to mono float32 at ``sample_rate``; flag silence."""

    def work():
        info = media.probe(source, ffmpeg)
        waveform = media.audio(source, sample_rate, ffmpeg, info)
        note = media.check_length(source, len(waveform) / sample_rate, info.duration, "audio")
        level = media.loudest_dbfs(waveform, sample_rate)
        with cache.atomic_h5(out, clip) as f:
            f.create_dataset("waveform", data=waveform, compression="gzip", compression_opts=1)
            silent = bool(level < silence_dbfs)
            f.attrs.update(
                sample_rate=sample_rate,
                seconds=len(waveform) / sample_rate,
                loudest_dbfs=level,
                silent=silent,
            )
            if silent:
                note = "; ".join(
                    filter(None, [note, f"silent audio track (loudest 100 ms: {level:.1f} dBFS)"])
                )
            if note:
                f.attrs["note"] = note
                log.warning("clip %s: %s", clip, note)

    return recording_bad_clips(clip, out, work)
