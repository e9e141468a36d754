"""Stage align_faces: detect, track and align one person's face in every frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msff import cache
from msff.faces import FaceDetector, Tracker, align, interpolate_track, keyframes, template
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
            if n_found == 0:
                f.attrs["note"] = f"no face found in {n_frames} frames"
                log.warning("clip %s: %s", clip, f.attrs["note"])
            log.info(
                "clip %s: face in %d of %d frames (MTCNN on %d)",
                clip,
                n_found,
                n_frames,
                n_detected,
            )

    return recording_bad_clips(clip, out, work)
