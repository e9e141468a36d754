"""Faces: detect (MTCNN) -> select one person across the clip -> align to a template.

Detection returns boxes, probabilities and the 5 landmarks of every face in every
frame, as typed arrays (an empty ``(0, 4)`` array for "no face", never ``None``).
Selection keeps one person: the largest, most central confident face starts the
track, then each frame takes the face overlapping the last kept box most. Alignment
maps the 5 landmarks onto a fixed template by a similarity transform (Umeyama).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from msff.devices import pick_device

# The 5-point template (left eye, right eye, nose tip, left and right mouth corner) of
# the widely used 112x112 face crop (ArcFace / InsightFace), as fractions of the side,
# shrunk by ZOOM about the centre: that crop cuts the chin and forehead, and a 224 crop
# of a 256 face (the paper's) should still hold the whole face.
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
ZOOM = 0.8
TEMPLATE_UNIT = (ARCFACE_112 / 112.0 - 0.5) * ZOOM + 0.5


def template(size: int) -> np.ndarray:
    """The 5 template points for an aligned face of ``size`` x ``size`` pixels."""
    return TEMPLATE_UNIT * size


@dataclass
class Detections:
    """The faces MTCNN found in one frame (k faces; k may be 0)."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    probs: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.probs)


class FaceDetector:
    """facenet-pytorch MTCNN, batched over frames, at a reduced detection size.

    Parameters
    ----------
    min_face_size : smallest face side, in pixels of the frame as given to ``detect``.
    detect_max_side : frames are shrunk to this longest side before detection (faster);
        boxes and landmarks are returned in the original frame's pixels. None: no shrink.
    device : "auto", "cpu" or "cuda[:n]".
    """

    def __init__(
        self, min_face_size: int = 20, detect_max_side: int | None = 640, device: str = "auto"
    ):
        from facenet_pytorch import MTCNN

        # MTCNN's R-Net and O-Net get a batch of a new size (the candidate faces) on almost
        # every frame, and oneDNN keeps a compiled primitive per input shape, up to 1,024:
        # over an hour of video that cache grew align_faces past 1.5 GB (bench/README.md,
        # "Memory against length"); with 8 the resident set stays flat at the same speed.
        # oneDNN reads the variable when it first builds a primitive, so this holds in a
        # process whose first convolution is MTCNN's (an align_faces job, msff predict); a
        # value the user set is kept.
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8")
        self.device = pick_device(device)
        self.detect_max_side = detect_max_side
        self.min_face_size = min_face_size
        self.mtcnn = MTCNN(keep_all=True, min_face_size=min_face_size, device=self.device)
        self.mtcnn.eval()

    def detect(self, frames: np.ndarray) -> list[Detections]:
        """Detect faces in a batch of same-size frames ``(n, H, W, 3)`` uint8 RGB.

        Frames smaller than ``min_face_size`` (a 64x36 clip) have no face: empty detections.
        """
        if len(frames) == 0:
            return []
        h, w = frames.shape[1:3]
        scale = 1.0
        batch = torch.from_numpy(np.array(frames))  # a writable copy
        if self.detect_max_side and max(h, w) > self.detect_max_side:
            scale = self.detect_max_side / max(h, w)
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            # Resized as uint8 in channels-last memory (the permuted view of NHWC): torch's
            # fast path, ~15x quicker than in float and within 1 grey level of it.
            batch = F.interpolate(
                batch.permute(0, 3, 1, 2), size=size, mode="bilinear", antialias=True
            ).permute(0, 2, 3, 1)
            scale = size[1] / w
        # MTCNN's min_face_size is in the pixels it sees; keep it in frame pixels.
        self.mtcnn.min_face_size = max(1, round(self.min_face_size * scale))
        # A frame smaller than the smallest face builds an empty scale pyramid in MTCNN
        # (its own test below), and it raises on torch.cat([]): no face can be there.
        if min(batch.shape[1:3]) * (12.0 / self.mtcnn.min_face_size) < 12:
            return [Detections() for _ in range(len(frames))]
        with torch.inference_mode():
            boxes, probs, points = self.mtcnn.detect(batch.to(self.device), landmarks=True)
        return [
            _typed(b, p, lm, 1.0 / scale) for b, p, lm in zip(boxes, probs, points, strict=True)
        ]


def _typed(boxes, probs, landmarks, scale: float) -> Detections:
    # facenet-pytorch says "no face" with None, inside object arrays under numpy 2.
    if boxes is None or probs is None or len(np.asarray(probs, dtype=object)) == 0:
        return Detections()
    probs = np.asarray(list(probs), dtype=np.float32).reshape(-1)
    keep = np.isfinite(probs)
    return Detections(
        (np.asarray(list(boxes), dtype=np.float32).reshape(-1, 4) * scale)[keep],
        probs[keep],
        (np.asarray(list(landmarks), dtype=np.float32).reshape(-1, 5, 2) * scale)[keep],
    )


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box with each of ``boxes`` (x1, y1, x2, y2)."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


class Tracker:
    """Keeps one person across a clip, frame by frame (state carries across chunks).

    The track starts on the face with the largest area discounted by its distance from
    the frame centre; each later frame takes the face overlapping the last kept box
    most (IoU >= ``min_iou``). When no face overlaps, the track restarts on the best
    face of that frame and ``resets`` counts it.
    """

    def __init__(self, width: int, height: int, min_prob: float = 0.9, min_iou: float = 0.3):
        self.centre = np.array([width / 2, height / 2], np.float32)
        self.diagonal = float(np.hypot(width, height))
        self.min_prob = min_prob
        self.min_iou = min_iou
        self.last: np.ndarray | None = None
        self.resets = 0

    def _start_score(self, boxes: np.ndarray) -> np.ndarray:
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        offset = np.linalg.norm(centres - self.centre, axis=1) / self.diagonal
        return area * (1.0 - offset)

    def select(self, det: Detections) -> int:
        """Index of the tracked person's face in ``det``, or -1 when it is not there."""
        candidates = np.flatnonzero(det.probs >= self.min_prob)
        if len(candidates) == 0:
            return -1
        boxes = det.boxes[candidates]
        if self.last is not None:
            overlap = iou(self.last, boxes)
            best = int(np.argmax(overlap))
            if overlap[best] >= self.min_iou:
                self.last = boxes[best]
                return int(candidates[best])
            self.resets += 1
        best = int(np.argmax(self._start_score(boxes)))
        self.last = boxes[best]
        return int(candidates[best])


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The similarity transform (rotation, uniform scale, translation) taking src to dst.

    Least squares over point pairs (Umeyama, 1991). Returns a 2x3 matrix M with
    ``dst ~ M[:, :2] @ src + M[:, 2]``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(sigma) @ sign) / s.var(0).sum()
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - matrix[:, :2] @ mu_s
    return matrix


def align(frames: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """Warp each frame so its 5 landmarks land on the template: ``(n, size, size, 3)`` uint8.

    Bilinear sampling, batched with ``grid_sample``; pixels outside the frame are black.
    """
    n, h, w = frames.shape[:3]
    if n == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    dst = template(size)
    # For each output pixel we need the source pixel: invert the forward map, then express
    # it between grid_sample's [-1, 1] coordinates (pixel centres, align_corners=False):
    # theta = to_unit(source) @ inverse @ from_unit(output), one 2x3 matrix per frame.
    inverse = np.stack(
        [np.linalg.inv(np.vstack([umeyama(lm, dst), [0, 0, 1]])) for lm in landmarks]
    )
    from_unit = np.array([[size / 2, 0, size / 2], [0, size / 2, size / 2], [0, 0, 1]])
    to_unit = np.array([[2 / w, 0, -1], [0, 2 / h, -1], [0, 0, 1]])
    theta = torch.from_numpy((to_unit @ inverse @ from_unit)[:, :2].astype(np.float32))
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    images = torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float()
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def keyframes(n: int, every: int) -> np.ndarray:
    """Indices, in a chunk of ``n`` frames, of the frames MTCNN sees: every k-th and the last.

    The last frame is a keyframe too, so the frames of a chunk are interpolated between
    detections of that chunk only and a clip streams chunk by chunk.
    """
    if n == 0:
        return np.zeros(0, int)
    keys = np.arange(0, n, max(1, every))
    return keys if keys[-1] == n - 1 else np.append(keys, n - 1)


@dataclass
class Track:
    """The tracked face in each of n frames; NaN and ``found`` false where there is none."""

    box: np.ndarray  # (n, 4) float32
    landmarks: np.ndarray  # (n, 5, 2) float32
    prob: np.ndarray  # (n,) float32; NaN also where interpolated
    found: np.ndarray  # (n,) bool
    detected: np.ndarray  # (n,) bool: MTCNN ran on this frame (else interpolated or none)


def interpolate_track(
    n: int,
    keys: np.ndarray,
    detections: list[Detections],
    picks: list[int],
    segments: list[int],
) -> Track:
    """The track over ``n`` frames from its detections on the keyframes ``keys``.

    A frame between two keyframes gets the landmarks and box linearly interpolated
    between theirs, but only when the face was found on both and the tracker did not
    restart in between (``segments``: the tracker's reset count after each keyframe);
    otherwise it has no face. ``picks`` are the tracker's choices (-1: none).
    """
    track = Track(
        np.full((n, 4), np.nan, np.float32),
        np.full((n, 5, 2), np.nan, np.float32),
        np.full(n, np.nan, np.float32),
        np.zeros(n, bool),
        np.zeros(n, bool),
    )
    for key, det, pick in zip(keys, detections, picks, strict=True):
        track.detected[key] = True
        if pick >= 0:
            track.box[key] = det.boxes[pick]
            track.landmarks[key] = det.landmarks[pick]
            track.prob[key] = det.probs[pick]
            track.found[key] = True
    for i in range(len(keys) - 1):
        a, b = keys[i], keys[i + 1]
        if b - a < 2 or not (track.found[a] and track.found[b]) or segments[i] != segments[i + 1]:
            continue
        t = ((np.arange(a + 1, b) - a) / (b - a)).astype(np.float32)
        for values in (track.box, track.landmarks):
            w = t.reshape(-1, *[1] * (values.ndim - 1))
            values[a + 1 : b] = (1 - w) * values[a] + w * values[b]
        track.found[a + 1 : b] = True
    return track


def aligned_eye_error(landmarks: np.ndarray, reference: np.ndarray, size: int) -> np.ndarray:
    """How far the eyes land from where ``reference`` alignment puts them, in face pixels.

    For each frame, the face is aligned with ``landmarks`` (e.g. interpolated between
    detections); the eyes of ``reference`` (e.g. detected on that frame) are mapped by that
    alignment and by the reference's own; the larger of the two eyes' distances is returned
    ``(n,)``, in pixels of the ``size`` x ``size`` aligned face.
    """
    dst = template(size)
    errors = np.zeros(len(landmarks))
    for i, (lm, ref) in enumerate(zip(landmarks, reference, strict=True)):
        used, own = umeyama(lm, dst), umeyama(ref, dst)
        eyes = ref[:2].astype(np.float64)
        moved = eyes @ used[:, :2].T + used[:, 2] - (eyes @ own[:, :2].T + own[:, 2])
        errors[i] = np.linalg.norm(moved, axis=1).max()
    return errors
