"""Stage align_faces: detect, track and align one person's face in every frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msff import cache
from msff.faces import FaceDetector, Tracker, align, template
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
) -> str:
    """Write the aligned faces of the frames cache ``frames`` to ``out``.

    Frames are read and detected ``batch_size`` at a time, so memory does not grow with
    the clip's length. Frames without the tracked face keep a row (``found`` false).
    """

    def work():
        upstream_error(frames, "extract_frames")
        meta = cache.attrs(frames)
        detector = FaceDetector(min_face_size, detect_max_side, device)
        tracker = None
        n_frames = n_found = 0
        with cache.atomic_h5(out, clip) as f:
            writer = cache.FaceWriter(f, size)
            for chunk in cache.frame_chunks(frames, batch_size):
                if tracker is None:
                    tracker = Tracker(chunk.shape[2], chunk.shape[1], min_prob, track_min_iou)
                detections = detector.detect(chunk)
                picks = [tracker.select(d) for d in detections]
                found = np.array([p >= 0 for p in picks])
                box = np.full((len(chunk), 4), np.nan, np.float32)
                landmarks = np.full((len(chunk), 5, 2), np.nan, np.float32)
                prob = np.full(len(chunk), np.nan, np.float32)
                for i, (d, p) in enumerate(zip(detections, picks, strict=True)):
                    if p >= 0:
                        box[i], landmarks[i], prob[i] = d.boxes[p], d.landmarks[p], d.probs[p]
                faces = np.zeros((len(chunk), size, size, 3), np.uint8)
                faces[found] = align(chunk[found], landmarks[found], size)
                writer.append(
                    faces=faces,
                    found=found,
                    frame_index=np.arange(n_frames, n_frames + len(chunk)),
                    box=box,
                    landmarks=landmarks,
                    prob=prob,
                )
                n_frames += len(chunk)
                n_found += int(found.sum())
            f.attrs.update(
                fps=meta["fps"],
                size=size,
                template=template(size),
                n_frames=n_frames,
                n_found=n_found,
                track_resets=tracker.resets if tracker else 0,
            )
            if n_found == 0:
                f.attrs["note"] = f"no face found in {n_frames} frames"
                log.warning("clip %s: %s", clip, f.attrs["note"])
            log.info("clip %s: face in %d of %d frames", clip, n_found, n_frames)

    return recording_bad_clips(clip, out, work)
