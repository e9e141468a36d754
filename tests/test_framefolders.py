"""Clips that are folders of frames, and pre-cropped faces (CK+48, AFEW's aligned faces)."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from msff import cache, framefolders, media
from msff.__main__ import main
from msff.errors import BadClipError
from msff.sheet import read
from msff.stages.faces import precropped_faces
from msff.stages.media import extract_frames

from .conftest import CKPLUS, MEAD_FRONT


def test_frames_are_read_in_natural_name_order(frame_folder):
    names = [p.name for p in framefolders.frame_paths(frame_folder)]
    assert names == [f"frame{i}.png" for i in range(1, 21)]  # frame10 after frame9
    # ... and they are the clip's frames in time order: frame k matches decoded frame k.
    decoded = np.concatenate(list(media.frames(MEAD_FRONT, fps=10)))[:20].astype(float)
    stream = media.frames(frame_folder)
    folder = np.concatenate(list(stream)).astype(float)
    assert folder.shape == decoded.shape and stream.fps == 0
    errors = np.abs(folder[:, None] - decoded[None]).mean(axis=(2, 3, 4))
    assert (errors.argmin(1) == np.arange(20)).all()


def test_a_folder_probes_as_video_without_audio(frame_folder):
    info = media.probe(frame_folder)
    assert info.audio is None and (info.video.width, info.video.height) == (256, 256)


def test_grey_frames_become_three_equal_channels(tmp_path):
    out = tmp_path / "frames.h5"
    assert extract_frames("S010_002", str(CKPLUS / "S010_002"), out, fps=10, max_side=None) == ""
    with h5py.File(out) as f:
        frames = f["frames"][()]
    assert frames.shape == (3, 48, 48, 3)
    original = [np.asarray(Image.open(p)) for p in sorted((CKPLUS / "S010_002").glob("*.png"))]
    for frame, grey in zip(frames, original, strict=True):
        for channel in range(3):
            np.testing.assert_array_equal(frame[..., channel], grey)


def test_empty_folder_and_unreadable_frame_are_named(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadClipError, match=f"{empty}: folder holds no image frames"):
        media.probe(empty)
    broken = tmp_path / "broken"
    shutil.copytree(CKPLUS / "S010_002", broken)
    (broken / "S010_002_00000015.png").write_bytes(b"not a png")
    out = tmp_path / "broken.h5"
    error = extract_frames("broken", str(broken), out, fps=None, max_side=None)
    assert "S010_002_00000015.png: not a readable image" in error
    assert cache.attrs(out)["error"] == error  # recorded in the cache, for the qc table


@pytest.mark.parametrize("size", [48, 128])
def test_precropped_keeps_the_face_pixels_but_for_the_resize(tmp_path, size):
    frames, faces = tmp_path / "frames.h5", tmp_path / "faces.h5"
    extract_frames("S014_001", str(CKPLUS / "S014_001"), frames, fps=None, max_side=None)
    assert precropped_faces("S014_001", frames, faces, size) == ""
    data = cache.read_faces(faces)
    assert data["found"].all() and data["attrs"]["n_found"] == data["attrs"]["n_frames"] == 3
    assert not data["detected"].any()
    assert data["attrs"]["face_input"] == "precropped"
    assert "coverage assumed" in data["attrs"]["note"]
    for face, path in zip(data["faces"], sorted((CKPLUS / "S014_001").glob("*.png")), strict=True):
        grey = Image.open(path)
        if size == 48:
            np.testing.assert_array_equal(face[..., 0], np.asarray(grey))
        else:  # against Pillow's own resize of the original crop: same picture, no shift
            reference = np.asarray(grey.resize((size, size), Image.BILINEAR), float)
            assert np.abs(face[..., 0] - reference).mean() < 2.0
        assert (face[..., 0] == face[..., 1]).all() and (face[..., 1] == face[..., 2]).all()


def test_sheet_of_ckplus48_is_subject_independent_and_precropped(tmp_path):
    out = tmp_path / "clips.tsv"
    assert main(["build-sheet", str(CKPLUS), "--out", str(out), "--face-input", "precropped"]) == 0
    sheet = read(out)
    assert len(sheet) == 216 and sheet["speaker"].nunique() == 79
    assert (sheet["face_input"] == "precropped").all()
    assert sheet["has_video"].all() and not sheet["has_audio"].any()
    assert sheet.groupby("speaker")["split"].nunique().max() == 1


def test_a_split_column_is_used_as_it_is(tmp_path):
    """A user's own benchmark split (a held-out test set) is never re-split."""
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "path,label,speaker,split\n"
        f"{CKPLUS / 'S005_001'},disgust,S005,test\n"
        f"{CKPLUS / 'S010_002'},surprise,S010,test\n"
        f"{CKPLUS / 'S014_001'},sad,S014,train\n"
    )
    out = tmp_path / "clips.tsv"
    assert main(["build-sheet", str(labels), "--out", str(out), "--train", "1", "--val", "0"]) == 0
    assert read(out)["split"].to_dict() == {
        "S005_001": "test",
        "S010_002": "test",
        "S014_001": "train",
    }
