import numpy as np
import pytest

from msff import faces, media

from .conftest import CREMA_D, MEAD_FRONT, RAVDESS_AV


@pytest.fixture(scope="module")
def detector():
    return faces.FaceDetector(min_face_size=20, detect_max_side=None, device="cpu")


def first_frames(path, n=6, max_side=640):
    return next(iter(media.frames(path, fps=10, max_side=max_side, chunk=n)))


def test_umeyama_recovers_a_similarity(rng):
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -3.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ (scale * rotation).T + shift
    matrix = faces.umeyama(src, dst)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


@pytest.mark.parametrize("path", [RAVDESS_AV, CREMA_D, MEAD_FRONT])
def test_one_confident_face_per_frame_of_real_clips(detector, path):
    for det in detector.detect(first_frames(path)):
        assert len(det) == 1 and det.probs[0] > 0.99
        x1, y1, x2, y2 = det.boxes[0]
        lm = det.landmarks[0]
        assert (lm[:, 0] > x1).all() and (lm[:, 0] < x2).all()
        assert (lm[:, 1] > y1).all() and (lm[:, 1] < y2).all()
        assert lm[0, 0] < lm[1, 0]  # left eye (image left) before right eye


def test_no_face_is_a_typed_empty_result(detector, bad_clips):
    (det,) = detector.detect(first_frames(bad_clips["no_face"], n=1))
    assert len(det) == 0
    assert det.boxes.shape == (0, 4) and det.landmarks.shape == (0, 5, 2)


def test_reduced_detection_size_keeps_landmarks(detector):
    frames = first_frames(RAVDESS_AV, n=4, max_side=None)  # 1280x720
    full = detector.detect(frames)
    small = faces.FaceDetector(20, detect_max_side=480, device="cpu").detect(frames)
    for a, b in zip(full, small, strict=True):
        eye_distance = np.linalg.norm(a.landmarks[0, 1] - a.landmarks[0, 0])
        assert np.abs(a.landmarks[0] - b.landmarks[0]).max() < 0.1 * eye_distance


@pytest.mark.parametrize("size", [128, 256])
@pytest.mark.parametrize("path", [RAVDESS_AV, CREMA_D, MEAD_FRONT])
def test_aligned_eyes_sit_on_the_template(detector, path, size):
    frames = first_frames(path)
    landmarks = np.stack([d.landmarks[0] for d in detector.detect(frames)])
    aligned = faces.align(frames, landmarks, size)
    assert aligned.shape == (len(frames), size, size, 3) and aligned.dtype == np.uint8
    # Detect again on the aligned faces, on a grey canvas so MTCNN sees some context.
    canvas = np.full((len(aligned), 2 * size, 2 * size, 3), 128, np.uint8)
    canvas[:, size // 2 : size // 2 + size, size // 2 : size // 2 + size] = aligned
    target = faces.template(size)
    # Where the similarity puts the eyes: off the template only by the 5-point fit's
    # residual (a broad smile pulls the mouth corners).
    fitted = np.stack(
        [
            lm @ m[:, :2].T + m[:, 2]
            for lm, m in ((lm, faces.umeyama(lm, target)) for lm in landmarks)
        ]
    )
    for det, fit in zip(detector.detect(canvas), fitted, strict=True):
        eyes = det.landmarks[0, :2] - size // 2
        assert np.linalg.norm(eyes - fit[:2], axis=1).max() < 0.02 * size  # the warp is exact
        assert np.linalg.norm(eyes - target[:2], axis=1).max() < 0.035 * size  # 4.5 px at 128


def test_tracker_keeps_the_same_person(detector):
    """Two real people side by side; the second grows larger, the track stays on the first."""
    left = first_frames(CREMA_D, n=4)  # 480x360, actor 1001
    right = first_frames(MEAD_FRONT, n=4)  # 256x256, actor W009
    frames = np.zeros((8, 360, 900, 3), np.uint8)
    frames[:, :, :480] = np.concatenate([left, left])
    small = right[:, ::2, ::2]  # 128x128: the second person starts smaller
    frames[:4, 116:244, 620:748] = small
    big = np.repeat(np.repeat(right[:, 20:200, 38:218], 2, axis=1), 2, axis=2)  # 360x360
    frames[4:, :, 520:880] = big  # later: the second face is the larger one
    tracker = faces.Tracker(900, 360, min_prob=0.9, min_iou=0.3)
    for det in detector.detect(frames):
        assert len(det) == 2
        pick = tracker.select(det)
        centre_x = det.boxes[pick, [0, 2]].mean()
        assert centre_x < 480  # always actor 1001 on the left
    assert tracker.resets == 0


def test_tracker_starts_on_the_largest_central_face():
    det = faces.Detections(
        boxes=np.array([[0, 0, 50, 50], [400, 200, 560, 360], [900, 500, 1100, 700]], np.float32),
        probs=np.array([0.99, 0.99, 0.5], np.float32),
        landmarks=np.zeros((3, 5, 2), np.float32),
    )
    tracker = faces.Tracker(1280, 720, min_prob=0.9)
    assert tracker.select(det) == 1  # the largest confident one; index 2 is too unsure


def test_keyframes_are_every_kth_and_the_last():
    assert faces.keyframes(10, 3).tolist() == [0, 3, 6, 9]
    assert faces.keyframes(8, 3).tolist() == [0, 3, 6, 7]
    assert faces.keyframes(5, 1).tolist() == [0, 1, 2, 3, 4]
    assert faces.keyframes(1, 3).tolist() == [0]


def _one_face(x: float) -> faces.Detections:
    box = np.array([[x, 10, x + 40, 50]], np.float32)
    landmarks = (faces.template(40) + [x, 10]).astype(np.float32)[None]
    return faces.Detections(box, np.array([0.99], np.float32), landmarks)


def test_interpolation_only_between_found_keyframes_of_one_track():
    keys = np.array([0, 3, 6, 9, 11])
    detections = [_one_face(0), _one_face(30), faces.Detections(), _one_face(90), _one_face(200)]
    picks = [0, 0, -1, 0, 0]
    segments = [0, 0, 0, 0, 1]  # the tracker restarted at frame 11: another person
    track = faces.interpolate_track(12, keys, detections, picks, segments)
    # Frames 1, 2 lie between two found keyframes: a third and two thirds of the way.
    np.testing.assert_allclose(track.box[1:3, 0], [10, 20], atol=1e-4)
    np.testing.assert_allclose(track.landmarks[2] - track.landmarks[0], [[20, 0]] * 5, atol=1e-4)
    assert track.found.tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1]
    assert track.detected.tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1]
    assert np.isnan(track.prob[~track.detected]).all() and np.isnan(track.landmarks[4:9]).all()


@pytest.mark.parametrize("path", [RAVDESS_AV, CREMA_D])
def test_detecting_every_third_frame_aligns_like_every_frame(tmp_path, path):
    """Interpolated landmarks put the eyes of the aligned face where detection would."""
    from msff import cache
    from msff.stages.faces import align_faces
    from msff.stages.media import extract_frames

    size = 128
    frames = tmp_path / "frames.h5"
    assert extract_frames("c", str(path), frames, fps=10, max_side=640) == ""
    caches = {}
    for k in (1, 3):
        caches[k] = tmp_path / f"faces_{k}.h5"
        settings = dict(size=size, detect_max_side=480, min_face_size=40, min_prob=0.9)
        settings.update(track_min_iou=0.3, batch_size=16, device="cpu", detect_every=k)
        assert align_faces("c", frames, caches[k], **settings) == ""
    every, third = (cache.read_faces(caches[k]) for k in (1, 3))
    n = len(every["found"])
    assert every["found"].all() and third["found"].all()
    assert third["attrs"]["n_detected"] < 0.45 * n  # a third of the frames, plus chunk ends
    interpolated = ~third["detected"]
    assert interpolated.sum() > 0.5 * n
    errors = faces.aligned_eye_error(
        third["landmarks"][interpolated], every["landmarks"][interpolated], size
    )
    # bench/stages.py measured 1.0-1.4 px mean, 4.5 px at most on these clips (10 fps).
    assert errors.mean() < 0.02 * size and errors.max() < 0.05 * size
    # On the frames MTCNN saw in both runs, the same landmarks.
    seen = third["detected"]
    np.testing.assert_allclose(third["landmarks"][seen], every["landmarks"][seen], atol=0.5)


def test_aligned_eye_error_is_the_shift_in_aligned_face_pixels():
    size = 128
    # A face at half the aligned size in the frame: frame pixels count twice in the face.
    reference = faces.template(size) * 0.5 + np.array([40.0, 30.0])
    frames = np.stack([reference, reference + [3.0, 0.0], reference + [0.0, -4.0]])
    errors = faces.aligned_eye_error(frames, np.stack([reference] * 3), size)
    np.testing.assert_allclose(errors, [0.0, 6.0, 8.0], atol=1e-6)
    # A turned landmark set moves each eye by its own amount: the larger one is reported.
    turn = np.array([[0.0, -1.0], [1.0, 0.0]])  # 90 degrees about the frame's origin
    turned = faces.aligned_eye_error((reference @ turn.T)[None], reference[None], size)
    assert turned[0] > 50  # a whole face's width off
