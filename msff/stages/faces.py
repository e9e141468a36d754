"""Stage align_faces: one person's face in every frame, detected, tracked and aligned.

Data sets that ship face crops (CK+48, AFEW's aligned faces) take ``precropped_faces``
instead, chosen per clip by the sheet's ``face_input`` column or config ``face_input``.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from msff import cache
from msff.faces import FaceDetector, Tracker, align, interpolate_track, keyframes, template
from msff.logs import Progress
from msff.stages import log, recording_bad_clips, upstream_error


def align_faces(
    clip: str,
    frames: str | Path,
    out: str | Path,
    size: int,
    detect_max_side: int | None,
    min_face_size: int,
    min_prob: float,
    track_min_iou: float,
    batch_size: int,
    device: str = "auto",
    detect_every: int = 1,
) -> str:
    """Write the aligned faces of the frames cache ``frames`` to ``out``.

    Frames are read ``batch_size * detect_every`` at a time, so memory does not grow with
    the clip's length. MTCNN sees every ``detect_every``-th frame of a chunk and its last
    (one batch of about ``batch_size``); the landmarks of the frames in between are
    interpolated (``msff.faces.interpolate_track``). Frames without the tracked face keep
    a row (``found`` false).
    """

    def work():
        upstream_error(frames, "extract_frames")
        meta = cache.attrs(frames)
        detector = FaceDetector(min_face_size, detect_max_side, device)
        tracker = None
        n_frames = n_found = n_detected = 0
        with h5py.File(frames, "r") as f:
            progress = Progress(f"clip {clip}", len(f["frames"]), "frames")
        with cache.atomic_h5(out, clip) as f:
            writer = cache.FaceWriter(f, size)
            for chunk in cache.frame_chunks(frames, batch_size * detect_every):
                if tracker is None:
                    tracker = Tracker(chunk.shape[2], chunk.shape[1], min_prob, track_min_iou)
                keys = keyframes(len(chunk), detect_every)
                detections = detector.detect(chunk[keys])
                picks, segments = [], []
                for d in detections:
                    picks.append(tracker.select(d))
                    segments.append(tracker.resets)
                track = interpolate_track(len(chunk), keys, detections, picks, segments)
                faces = np.zeros((len(chunk), size, size, 3), np.uint8)
                faces[track.found] = align(chunk[track.found], track.landmarks[track.found], size)
                writer.append(
                    faces=faces,
                    found=track.found,
                    detected=track.detected,
                    frame_index=np.arange(n_frames, n_frames + len(chunk)),
                    box=track.box,
                    landmarks=track.landmarks,
                    prob=track.prob,
                )
                n_frames += len(chunk)
                n_found += int(track.found.sum())
                n_detected += len(keys)
                progress.update(n_frames)
            f.attrs.update(
                fps=meta["fps"],
                size=size,
                template=template(size),
                n_frames=n_frames,
                n_found=n_found,
                n_detected=n_detected,
                detect_every=detect_every,
                track_resets=tracker.resets if tracker else 0,
            )
            # The frames' own note (a damaged file, decoded in part) goes on with the faces:
            # the frames cache is deleted once they are aligned.
            notes = [meta["note"]]
            if n_found == 0:
                notes.append(f"no face found in {n_frames} frames")
                log.warning("clip %s: %s", clip, notes[-1])
            f.attrs["note"] = "; ".join(note for note in notes if note)
            log.info(
                "clip %s: face in %d of %d frames (MTCNN on %d)",
                clip,
                n_found,
                n_frames,
                n_detected,
            )

    return recording_bad_clips(clip, out, work)


def precropped_faces(clip: str, frames: str | Path, out: str | Path, size: int) -> str:
    """Write the frames of a data set that ships face crops as its faces: no detection.

    Each frame is resized to ``size`` x ``size`` (grey frames arrive as RGB with three
    equal channels) and counted as a found face: coverage is assumed, not measured, and
    the cache says so (``face_input = precropped``). MTCNN would find little in a 48x48
    crop, and a run must not train on nothing.
    """

    def work():
        upstream_error(frames, "extract_frames")
        meta = cache.attrs(frames)
        n_frames = 0
        with cache.atomic_h5(out, clip) as f:
            writer = cache.FaceWriter(f, size)
            for chunk in cache.frame_chunks(frames, 64):
                faces = resize_faces(chunk, size)
                n = len(chunk)
                writer.append(
                    faces=faces,
                    found=np.ones(n, bool),
                    detected=np.zeros(n, bool),
                    frame_index=np.arange(n_frames, n_frames + n),
                    box=np.tile(
                        np.array([0, 0, chunk.shape[2], chunk.shape[1]], np.float32), (n, 1)
                    ),
                    landmarks=np.full((n, 5, 2), np.nan, np.float32),
                    prob=np.full(n, np.nan, np.float32),
                )
                n_frames += n
            f.attrs.update(
                fps=meta["fps"],
                size=size,
                n_frames=n_frames,
                n_found=n_frames,
                n_detected=0,
                track_resets=0,
                face_input="precropped",
                note="; ".join(
                    note
                    for note in (meta["note"], "pre-cropped faces: coverage assumed, not detected")
                    if note
                ),
            )
            log.info("clip %s: %d pre-cropped faces resized to %d", clip, n_frames, size)

    return recording_bad_clips(clip, out, work)


def resize_faces(frames: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 crops -> (N, size, size, 3): antialiased bilinear, the whole crop."""
    if frames.shape[1:3] == (size, size):
        return frames.copy()
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(
        x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
