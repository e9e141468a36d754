"""Torch datasets over the per-clip caches: face frames, face windows, spectrogram segments.

Each item is ``(tensor, label)``; ``owner`` arrays map items back to clips so clip scores
can be averaged (``msff.train.clip_means``). Clips a model cannot see (no face found, no
audio) contribute no item and get the uniform score row.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from msff.errors import ConfigError

Prepare = Callable[[np.ndarray], torch.Tensor]
# Cache files a data set keeps open at once (per process), see ``_Caches``.
MAX_OPEN_FILES = 64
# A spectrogram data set whose images take at most this many bytes reads them all once
# (a clip's file per clip, not one opening per segment): the cpu preset's 64 x 64 images
# of RAVDESS (about 90 MB of training segments) train several times faster. Larger
# sets (the paper's 224 x 224 images at four scales) stay on disk, read per item.
IN_MEMORY_BYTES = 1 << 30


def windows(n: int, length: int, stride: int) -> list[np.ndarray]:
    """Index windows of ``length`` over a sequence of ``n`` items, every ``stride``.

    A sequence shorter than ``length`` is looped (0, 1, 2, 0, 1, 2, ...) into one window,
    so a 3-frame CK+ sequence still feeds an 8-step BLSTM; an empty one gives no window.
    """
    if n == 0:
        return []
    if n < length:
        return [np.arange(length) % n]
    starts = list(range(0, n - length + 1, stride))
    if starts[-1] != n - length:  # the tail of the clip gets a window too
        starts.append(n - length)
    return [np.arange(s, s + length) for s in starts]


def augment_faces(
    faces: np.ndarray, crop: int, rng: np.random.Generator, max_shift: float = 0.05
) -> np.ndarray:
    """Training augmentation of aligned faces (N, S, S, 3): flip, translation, random crop.

    One random draw per call, applied to all N faces, so the frames of a sequence move
    together. Returns (N, crop, crop, 3).
    """
    size = faces.shape[1]
    if rng.random() < 0.5:
        faces = faces[:, :, ::-1]
    shift = int(round(max_shift * size))
    if shift:  # translation: pad by `shift` and let the crop range over the padding too
        faces = np.pad(faces, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
    y, x = rng.integers(0, faces.shape[1] - crop + 1, size=2)
    return np.ascontiguousarray(faces[:, y : y + crop, x : x + crop])


def centre_crop(faces: np.ndarray, crop: int) -> np.ndarray:
    """Test-time crop of aligned faces (N, S, S, 3) -> (N, crop, crop, 3)."""
    start = (faces.shape[1] - crop) // 2
    return np.ascontiguousarray(faces[:, start : start + crop, start : start + crop])


class _Caches:
    """Open HDF5 files lazily, per process (DataLoader workers each open their own).

    At most ``max_open`` files stay open, the least recently used closed first: a data
    set of thousands of clips must not exhaust the process's file descriptors (1,024 by
    default). Callers read what they need before asking for the next file.
    """

    def __init__(self, max_open: int = MAX_OPEN_FILES):
        self.max_open = max_open
        self.files: OrderedDict[str, h5py.File] = OrderedDict()

    def __call__(self, path: str) -> h5py.File:
        if path in self.files:
            self.files.move_to_end(path)
            return self.files[path]
        while len(self.files) >= self.max_open:
            _, oldest = self.files.popitem(last=False)
            oldest.close()
        self.files[path] = h5py.File(path, "r")
        return self.files[path]

    def close(self) -> None:
        """Close every open file."""
        while self.files:
            self.files.popitem()[1].close()

    def __getstate__(self):
        return {"max_open": self.max_open, "files": OrderedDict()}


def found_rows(faces_h5: str | Path) -> np.ndarray:
    """Row indices of the frames of a faces cache where the tracked face was found."""
    with h5py.File(faces_h5, "r") as f:
        if f.attrs["error"] or "found" not in f:
            return np.zeros(0, int)
        return np.flatnonzero(f["found"][()])


class FaceFrames(Dataset):
    """Every found face of the given clips, one item per frame (frame-level CNN training)."""

    def __init__(
        self,
        faces_h5: Sequence[str],
        labels: Sequence[int],
        crop: int,
        prepare: Prepare,
        augment: bool,
        seed: int = 0,
        max_frames: int | None = None,
    ):
        self.paths = [str(p) for p in faces_h5]
        self.labels = list(labels)
        self.crop, self.prepare, self.augment = crop, prepare, augment
        self.rng = np.random.default_rng(seed)
        items = []
        for clip, path in enumerate(self.paths):
            rows = found_rows(path)
            if max_frames and len(rows) > max_frames:  # evenly spaced, not the first ones
                rows = rows[np.linspace(0, len(rows) - 1, max_frames).round().astype(int)]
            items += [(clip, int(r)) for r in rows]
        self.items = items
        self.owner = np.array([c for c, _ in items], dtype=int)
        self.open = _Caches()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        clip, row = self.items[i]
        face = self.open(self.paths[clip])["faces"][row : row + 1]
        face = (
            augment_faces(face, self.crop, self.rng)
            if self.augment
            else centre_crop(face, self.crop)
        )
        return self.prepare(face)[0], self.labels[clip]


class FeatureWindows(Dataset):
    """Windows of ``length`` consecutive per-frame (or per-segment) feature vectors.

    ``features`` holds one (n_i, D) array per clip; a clip shorter than the window is
    looped into one window (see :func:`windows`), an empty one gives no item.
    """

    def __init__(
        self, features: Sequence[np.ndarray], labels: Sequence[int], length: int, stride: int
    ):
        self.features = [np.asarray(f, np.float32) for f in features]
        self.labels = list(labels)
        self.items = [
            (c, w) for c, f in enumerate(self.features) for w in windows(len(f), length, stride)
        ]
        self.owner = np.array([c for c, _ in self.items], dtype=int)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        clip, index = self.items[i]
        return torch.from_numpy(self.features[clip][index]), self.labels[clip]


class FaceClips(Dataset):
    """Windows of ``length`` aligned faces as (3, T, size, size) volumes, for C3D.

    ``prepare`` takes one (3, T, size, size) float volume of 0-255 RGB pixels.
    """

    def __init__(
        self,
        faces_h5: Sequence[str],
        labels: Sequence[int],
        length: int,
        stride: int,
        crop: int,
        size: int,
        augment: bool,
        prepare: Prepare,
        seed: int = 0,
    ):
        self.paths = [str(p) for p in faces_h5]
        self.labels = list(labels)
        self.crop, self.size, self.augment, self.prepare = crop, size, augment, prepare
        self.rng = np.random.default_rng(seed)
        self.items = [
            (c, found[w])
            for c, p in enumerate(self.paths)
            for found in [found_rows(p)]
            for w in windows(len(found), length, stride)
        ]
        self.owner = np.array([c for c, _ in self.items], dtype=int)
        self.open = _Caches()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        clip, rows = self.items[i]
        faces = self.open(self.paths[clip])["faces"]
        order = np.argsort(rows)  # h5py reads sorted, unique indices; map back after
        unique, inverse = np.unique(rows[order], return_inverse=True)
        volume = faces[unique][inverse][np.argsort(order)]
        volume = (
            augment_faces(volume, self.crop, self.rng)
            if self.augment
            else centre_crop(volume, self.crop)
        )
        video = torch.from_numpy(volume).permute(3, 0, 1, 2).float()  # (3, T, H, W)
        if self.size != self.crop:
            video = torch.nn.functional.interpolate(
                video,
                size=(self.size, self.size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        return self.prepare(video), self.labels[clip]


def add_noise(
    images: np.ndarray, rng: np.random.Generator, gaussian_std: float, salt_pepper: float
) -> np.ndarray:
    """The paper's spectrogram augmentation: Gaussian noise, then salt-and-pepper noise.

    ``images`` are uint8; the result keeps their shape, dtype and 0-255 range.
    """
    noisy = images.astype(np.float32) + rng.normal(0, gaussian_std, images.shape)
    flip = rng.random(images.shape)
    noisy[flip < salt_pepper / 2] = 0
    noisy[flip > 1 - salt_pepper / 2] = 255
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def mask_bands(
    images: np.ndarray, rng: np.random.Generator, freq_masks: int, time_masks: int, width: float
) -> np.ndarray:
    """SpecAugment-style masking (Park et al. 2019) of spectrogram images (N, H, W).

    ``freq_masks`` bands of rows and ``time_masks`` bands of columns, each up to
    ``width`` of the image wide (drawn uniformly, at a random place), are set to 0, the
    image's silence: the network cannot lean on one formant or one instant. One draw
    per call, applied to all N images; uint8 in, uint8 out.
    """
    masked = images.copy()
    for axis, count in ((1, freq_masks), (2, time_masks)):
        size = images.shape[axis]
        for _ in range(count):
            span = int(rng.integers(0, int(width * size) + 1))
            start = int(rng.integers(0, size - span + 1))
            index = [slice(None)] * 3
            index[axis] = slice(start, start + span)
            masked[tuple(index)] = 0
    return masked


@dataclass(frozen=True)
class SpectrogramAugment:
    """Training augmentation of spectrogram segments (all off: the images as cached).

    ``gaussian_std``, ``salt_pepper``: the paper's noise (:func:`add_noise`);
    ``freq_masks``, ``time_masks``, ``mask_width``: :func:`mask_bands`.
    """

    gaussian_std: float = 0.0
    salt_pepper: float = 0.0
    freq_masks: int = 0
    time_masks: int = 0
    mask_width: float = 0.0

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The augmented images (N, H, W) uint8."""
        if self.freq_masks or self.time_masks:
            images = mask_bands(images, rng, self.freq_masks, self.time_masks, self.mask_width)
        return add_noise(images, rng, self.gaussian_std, self.salt_pepper)


def scale_rows(spectrograms: h5py.File, train: bool) -> np.ndarray:
    """The rate-scale rows of an open spectrogram cache that a reader takes.

    Every scale in training (the lower ones are augmentation), scale 1.0 at test time;
    none when the clip cannot be heard (a recorded error or a silent track): it scores
    uniform.
    """
    if spectrograms.attrs["error"] or spectrograms.attrs.get("silent", False):
        return np.zeros(0, int)
    scales = spectrograms["scales"][()]
    return np.arange(len(scales)) if train else np.flatnonzero(np.isclose(scales, 1.0))


def recentred(images: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """uint8 spectrogram images (N, bands, time) less a band profile (bands,), about grey 128.

    The speaker normalisation of the spectrogram CNN's input (``audio_cnn_speaker_norm``):
    ``profile`` is the speaker's mean level of each band where it is heard, so what stays
    is how a segment departs from its speaker's usual spectrum. Pixels at 0 (the image's
    floor, ``top_db`` under its peak: nothing heard) stay 0, so a pause stays a black image
    and is not turned into the speaker's spectrum upside down; every heard pixel stays
    above 0. uint8 out, so the paper's noise and the network's ``prepare`` see pixels as
    before.
    """
    shifted = images.astype(np.float32) - profile.astype(np.float32)[:, None] + 128
    out = np.clip(np.rint(shifted), 1, 255).astype(np.uint8)
    out[images == 0] = 0
    return out


class SpectrogramSegments(Dataset):
    """Spectrogram segment images of the given clips, one item per (scale, segment).

    Training takes every rate scale (the lower ones are augmentation) and augments
    (the paper's noise by default, see :class:`SpectrogramAugment`); test time takes
    scale 1.0 only. ``quiet_db``: leave out, in training only, the segments whose
    loudest pixel is more than this many dB under the clip's peak (pauses: black
    images that carry no emotion but a label); None keeps them all. ``prepare`` turns
    uint8 images (N, H, W) into the network's tensors. ``profiles``: per clip, None or
    the (scales * bands) levels its images lose (:func:`recentred`) before noise.
    """

    def __init__(
        self,
        spectrogram_h5: Sequence[str],
        labels: Sequence[int],
        train: bool,
        prepare: Prepare,
        gaussian_std: float = 8.0,
        salt_pepper: float = 0.01,
        seed: int = 0,
        augment: SpectrogramAugment | None = None,
        quiet_db: float | None = None,
        profiles: Sequence[np.ndarray | None] | None = None,
    ):
        self.paths = [str(p) for p in spectrogram_h5]
        self.profiles = list(profiles) if profiles is not None else [None] * len(self.paths)
        self.labels = list(labels)
        self.train, self.prepare = train, prepare
        self.augment = augment or SpectrogramAugment(gaussian_std, salt_pepper)
        self.rng = np.random.default_rng(seed)
        self.items = []
        self.memory: dict[int, np.ndarray] | None = {}
        used_bytes = 0
        for clip, path in enumerate(self.paths):
            with h5py.File(path, "r") as f:
                use = scale_rows(f, train)
                if not len(use):
                    continue  # nothing to hear: the clip scores uniform
                n_scales, n = f["images"].shape[:2]
                if self.profiles[clip] is not None:  # one row of levels per rate scale
                    self.profiles[clip] = np.reshape(self.profiles[clip], (n_scales, -1))
                if self.memory is not None:
                    used_bytes += f["images"].nbytes
                    if used_bytes <= IN_MEMORY_BYTES:
                        self.memory[clip] = f["images"][()]
                    else:
                        self.memory = None  # too large: every item read from its file
                keep = np.ones((n_scales, n), bool)
                if train and quiet_db is not None:
                    if "segment_peak_db" not in f:
                        raise ConfigError(
                            f"{path}: no segment_peak_db (a spectrogram cache written before "
                            "quiet segments could be left out): rerun the spectrograms rule"
                        )
                    keep = f["segment_peak_db"][()] >= -quiet_db
                self.items += [(clip, int(r), k) for r in use for k in range(n) if keep[r, k]]
        self.owner = np.array([c for c, _, _ in self.items], dtype=int)
        self.open = _Caches()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        clip, scale, segment = self.items[i]
        if self.memory is not None:
            image = self.memory[clip][scale, segment][None]
        else:
            image = self.open(self.paths[clip])["images"][scale, segment][None]
        if self.profiles[clip] is not None:
            image = recentred(image, self.profiles[clip][scale])
        if self.train:
            image = self.augment(image, self.rng)
        return self.prepare(image)[0], self.labels[clip]
