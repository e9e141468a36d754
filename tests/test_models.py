"""The networks (shapes, gradients, freezing) and the loaders of their pretrained weights.

The published weight files cannot be had here, so the loader tests write files of the
same key layout: our own modules for vgg_face_dag.pth and c3d.pickle, torchvision's
own resnet50 / vgg19 for the ImageNet files.
"""

import re

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from msff.errors import WeightsError
from msff.models import (
    BACKBONES,
    BLSTM,
    C3D,
    C3D_PREPROCESS,
    IMAGENET_PREPROCESS,
    VGG19,
    VGG_FACE_PREPROCESS,
    ResNet50,
    VGGFace,
    freeze_conv,
    load_c3d,
    load_torchvision,
    load_vgg_face,
)

SMALL = 16  # fc_width where a test is not about the paper's 4096
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def tiny_input(name, batch=2):
    # 32x32 faces (1x1 after pool5) and 8x32x32 clips: fast, and every pool has input left.
    shape = (batch, 3, 8, 32, 32) if name == "c3d" else (batch, 3, 32, 32)
    return torch.rand(shape) * 255


def layout(names):
    """The state-dict keys of layers ``names`` (weight and bias of each)."""
    return [f"{n}.{p}" for n in names for p in ("weight", "bias")]


VGG_FACE_LAYERS = [
    *(f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)),
    "fc6",
    "fc7",
    "fc8",
]
C3D_LAYERS = [
    "conv1",
    "conv2",
    "conv3a",
    "conv3b",
    "conv4a",
    "conv4b",
    "conv5a",
    "conv5b",
    "fc6",
    "fc7",
    "fc8",
]


def save(state, path):
    torch.save(state, path)
    return path


def same(model, state, keys, file_keys=None):
    own = model.state_dict()
    return all(torch.equal(own[k], state[f]) for k, f in zip(keys, file_keys or keys, strict=True))


# --- the networks ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BACKBONES))
def test_output_and_feature_shapes(name):
    torch.manual_seed(0)
    model = BACKBONES[name](num_classes=7, fc_width=SMALL).eval()
    x = tiny_input(name)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
        assert model.features(x).shape == (2, SMALL)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_gradient_reaches_every_layer(name):
    torch.manual_seed(0)
    model = BACKBONES[name](num_classes=7, fc_width=SMALL).train()
    x = model.preprocess.normalize(tiny_input(name))
    F.cross_entropy(model(x), torch.tensor([0, 3])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Conv3d))
    assert first_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(BACKBONES))
def test_freeze_conv_trains_the_fully_connected_layers_only(name):
    torch.manual_seed(0)
    model = BACKBONES[name](num_classes=7, fc_width=SMALL).train()
    trainable = freeze_conv(model)
    linear = {
        f"{m_name}.{p_name}"
        for m_name, m in model.named_modules()
        if isinstance(m, nn.Linear)
        for p_name, _ in m.named_parameters()
    }
    assert set(trainable) == linear
    F.cross_entropy(model(tiny_input(name)), torch.tensor([1, 2])).backward()
    for pname, p in model.named_parameters():
        assert (p.grad is not None) == (pname in linear), pname


def test_frozen_resnet_keeps_its_batch_norm_statistics():
    torch.manual_seed(0)
    model = ResNet50(fc_width=SMALL)
    freeze_conv(model)
    model.train()
    before = model.bn1.running_mean.clone()
    model(tiny_input("resnet50"))
    assert torch.equal(model.bn1.running_mean, before)
    assert not model.bn1.training and model.dropout.training


def test_c3d_pool5_is_the_papers_shape_and_smaller_clips_work():
    torch.manual_seed(0)
    model = C3D(fc_width=SMALL).eval()
    with torch.no_grad():
        assert model.convolutions(torch.rand(1, 3, 16, 112, 112)).shape == (1, 512, 1, 4, 4)
        clip = torch.rand(1, 3, 8, 56, 56)  # the CPU preset's clips
        assert model.convolutions(clip).shape == (1, 512, 1, 3, 3)
        assert model(clip).shape == (1, 7)


def test_blstm_classifies_windows_of_features():
    torch.manual_seed(0)
    model = BLSTM()  # the paper's: 2 layers, 256 per direction, 4096-d inputs
    assert model.eval()(torch.rand(2, 8, 4096)).shape == (2, 7)
    small = BLSTM(input_dim=32, hidden=8).train()
    F.cross_entropy(small(torch.rand(3, 8, 32)), torch.tensor([0, 1, 6])).backward()
    for pname, p in small.named_parameters():
        # both directions of both layers learn, the reverse ones included
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_blstm_reads_the_whole_window_in_both_directions():
    torch.manual_seed(0)
    model = BLSTM(input_dim=4, hidden=3, layers=1).eval()
    x = torch.rand(1, 8, 4)
    with torch.no_grad():
        base = model(x)
        for step in (0, 7):
            changed = x.clone()
            changed[0, step] += 1
            assert not torch.allclose(model(changed), base), step


def test_preprocessing_travels_with_the_weights():
    assert VGGFace.preprocess is VGG_FACE_PREPROCESS and C3D.preprocess is C3D_PREPROCESS
    assert ResNet50.preprocess is IMAGENET_PREPROCESS and VGG19.preprocess is IMAGENET_PREPROCESS
    white = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    expected = [255 - m for m in VGG_FACE_PREPROCESS.mean]
    assert torch.allclose(VGG_FACE_PREPROCESS.normalize(white)[0, :, 0, 0], torch.tensor(expected))
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    assert torch.allclose(IMAGENET_PREPROCESS.normalize(white)[0, :, 1, 1], torch.tensor(expected))
    clip = torch.full((1, 3, 16, 2, 2), 7, dtype=torch.uint8)
    assert torch.equal(C3D_PREPROCESS.normalize(clip), clip.float())


# --- VGG-Face: vgg_face_dag.pth -------------------------------------------------------


@pytest.fixture(scope="module")
def vgg_face_file(tmp_path_factory):
    torch.manual_seed(1)
    state = VGGFace(num_classes=2622).state_dict()
    return save(state, tmp_path_factory.mktemp("w") / "vgg_face_dag.pth"), state


def test_vgg_face_file_layout_is_the_oxford_conversions(vgg_face_file):
    _, state = vgg_face_file
    assert list(state) == layout(VGG_FACE_LAYERS)
    assert state["conv1_1.weight"].shape == (64, 3, 3, 3)
    assert state["fc6.weight"].shape == (4096, 25088)
    assert state["fc8.weight"].shape == (2622, 4096)


def test_load_vgg_face(vgg_face_file):
    path, state = vgg_face_file
    torch.manual_seed(2)
    model = VGGFace()
    fc8 = model.fc8.weight.clone()
    loaded = load_vgg_face(model, path)
    assert loaded.path == path and not loaded.from_scratch
    assert loaded.loaded_keys == tuple(layout(VGG_FACE_LAYERS[:-1]))
    assert loaded.skipped_keys == ("fc8.weight", "fc8.bias")
    assert "fc8 re-initialised for 7 classes (2622 in the file)" in loaded.note
    assert same(model, state, loaded.loaded_keys)
    assert torch.equal(model.fc8.weight, fc8)  # the classifier keeps its own start
    model.eval()
    face = VGGFace.preprocess.normalize(torch.randint(0, 256, (1, 3, 224, 224)))
    with torch.no_grad():
        assert model.features(face).shape == (1, 4096)
        assert model(face).shape == (1, 7)


def test_narrow_fc_layers_take_the_convolutions_only(vgg_face_file):
    path, state = vgg_face_file
    model = VGGFace(fc_width=SMALL)
    loaded = load_vgg_face(model, path)
    convs = tuple(layout(VGG_FACE_LAYERS[:-3]))
    assert loaded.loaded_keys == convs
    assert loaded.skipped_keys == tuple(layout(["fc6", "fc7", "fc8"]))
    assert "fc6, fc7 not loaded: fc_width=16 here, 4096 in the file" in loaded.note
    assert same(model, state, convs)


def test_keeping_the_classifier_needs_the_files_classes(vgg_face_file):
    path, _ = vgg_face_file
    model = VGGFace(num_classes=7, fc_width=SMALL)
    before = model.conv1_1.weight.clone()
    with pytest.raises(ValueError, match="num_classes=2622 .* num_classes=7"):
        load_vgg_face(model, path, keep_classifier=True)
    assert torch.equal(model.conv1_1.weight, before)  # checked before anything is copied


@pytest.fixture(scope="module")
def small_vgg_face_state():
    # The published layout with narrow fc layers: enough for errors raised on the keys.
    torch.manual_seed(3)
    return VGGFace(num_classes=2622, fc_width=SMALL).state_dict()


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda s: s.update({"conv6_1.weight": torch.zeros(1)}),
            "conv6_1.weight is in the file but not in the model",
        ),
        (lambda s: s.pop("conv5_3.bias"), "conv5_3.bias is in the model but not in the file"),
        (
            lambda s: s.update({"conv1_1.weight": torch.zeros(64, 1, 3, 3)}),
            "conv1_1.weight has shape (64, 1, 3, 3) in the file, (64, 3, 3, 3) in the model",
        ),
    ],
    ids=["key the model lacks", "key the file lacks", "shape"],
)
def test_a_file_that_does_not_fit_is_refused(tmp_path, small_vgg_face_state, change, message):
    state = dict(small_vgg_face_state)
    change(state)
    path = save(state, tmp_path / "vgg_face_dag.pth")
    model = VGGFace(fc_width=SMALL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError, match=re.escape(f"{path}: {message}")):
        load_vgg_face(model, path)
    assert same(model, before, list(before))


def test_missing_and_unreadable_files_are_refused(tmp_path):
    model = VGGFace(fc_width=SMALL)
    missing = tmp_path / "vgg_face_dag.pth"
    with pytest.raises(WeightsError, match=re.escape(f"{missing}: no such weight file")):
        load_vgg_face(model, missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a weight file")
    with pytest.raises(WeightsError, match=re.escape(f"{garbage}: not a plain state dict")):
        load_vgg_face(model, garbage)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(save({"a": torch.zeros(100)}, tmp_path / "a.pth").read_bytes()[:600])
    with pytest.raises(WeightsError, match=re.escape(f"{truncated}: damaged or not a PyTorch")):
        load_vgg_face(model, truncated)
    tensor = save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(WeightsError, match=re.escape(f"{tensor}: holds a Tensor, not a state")):
        load_vgg_face(model, tensor)


# --- C3D: c3d.pickle ------------------------------------------------------------------


@pytest.fixture(scope="module")
def c3d_file(tmp_path_factory):
    torch.manual_seed(4)
    state = C3D(num_classes=487).state_dict()
    return save(state, tmp_path_factory.mktemp("w") / "c3d.pickle"), state


def test_load_c3d(c3d_file):
    path, state = c3d_file
    assert list(state) == layout(C3D_LAYERS)
    assert state["fc6.weight"].shape == (4096, 8192)
    assert state["fc8.weight"].shape == (487, 4096)
    model = C3D()
    loaded = load_c3d(model, path)
    assert loaded.loaded_keys == tuple(layout(C3D_LAYERS[:-1]))
    assert loaded.skipped_keys == ("fc8.weight", "fc8.bias")
    assert same(model, state, loaded.loaded_keys)
    with torch.no_grad():
        assert model.eval().features(torch.rand(1, 3, 16, 112, 112) * 255).shape == (1, 4096)

    narrow = C3D(fc_width=SMALL)
    assert load_c3d(narrow, path).loaded_keys == tuple(layout(C3D_LAYERS[:-3]))


def test_c3d_keeps_the_sports_classifier_when_asked(c3d_file):
    path, state = c3d_file
    model = C3D(num_classes=487)
    loaded = load_c3d(model, path, keep_classifier=True)
    assert loaded.loaded_keys == tuple(state) and loaded.skipped_keys == ()
    assert loaded.note == ""
    assert same(model, state, list(state))


# --- torchvision ImageNet files -------------------------------------------------------


@pytest.fixture(scope="module")
def resnet50_state():
    torch.manual_seed(5)
    return torchvision.models.resnet50(weights=None).state_dict()


def test_load_torchvision_resnet50(tmp_path, resnet50_state):
    path = save(resnet50_state, tmp_path / "resnet50.pth")
    model = ResNet50(fc_width=SMALL)
    loaded = load_torchvision(model, path, "resnet50")
    backbone = [k for k in resnet50_state if not k.startswith("fc.")]
    assert loaded.loaded_keys == tuple(backbone)
    assert loaded.skipped_keys == ("fc6.weight", "fc6.bias", "fc.weight", "fc.bias")
    assert "fc6 not in the file" in loaded.note and "fc re-initialised" in loaded.note
    assert same(model, resnet50_state, backbone)
    with pytest.raises(ValueError, match="num_classes=1000 .* num_classes=7"):
        load_torchvision(ResNet50(fc_width=SMALL), path, "resnet50", keep_classifier=True)


def test_imagenet_weights_come_from_the_hub_cache_or_not_at_all(
    tmp_path, monkeypatch, resnet50_state
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = ResNet50(fc_width=SMALL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loaded = load_torchvision(model, None, "resnet50")
    assert loaded.from_scratch and loaded.loaded_keys == ()
    assert loaded.skipped_keys == tuple(before)
    assert "trained from scratch" in loaded.note
    assert same(model, before, list(before))

    cached = tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    cached.parent.mkdir(parents=True)
    save(resnet50_state, cached)
    loaded = load_torchvision(model, None, "resnet50")
    assert loaded.path == cached and len(loaded.loaded_keys) == len(resnet50_state) - 2
    with pytest.raises(ValueError, match="arch='resnet18'"):
        load_torchvision(model, None, "resnet18")


@pytest.fixture(scope="module")
def vgg19_file(tmp_path_factory):
    torch.manual_seed(6)
    state = torchvision.models.vgg19(weights=None).state_dict()
    return save(state, tmp_path_factory.mktemp("w") / "vgg19-dcbb9e9d.pth"), state


def test_load_torchvision_vgg19(vgg19_file):
    path, state = vgg19_file
    model = VGG19()
    loaded = load_torchvision(model, path, "vgg19")
    file_keys = [k for k in state if not k.startswith("classifier.6.")]
    assert loaded.loaded_keys == tuple(k.replace("features.", "convs.") for k in file_keys)
    assert loaded.skipped_keys == ("classifier.6.weight", "classifier.6.bias")
    assert same(model, state, loaded.loaded_keys, file_keys)


def test_narrow_vgg19_takes_the_imagenet_convolutions_only(vgg19_file):
    path, state = vgg19_file
    model = VGG19(fc_width=SMALL)
    loaded = load_torchvision(model, path, "vgg19")
    convs = [k for k in state if k.startswith("features.")]
    assert len(convs) == 32  # 16 convolutions
    assert loaded.loaded_keys == tuple(k.replace("features.", "convs.") for k in convs)
    assert "classifier.0, classifier.3 not loaded: fc_width=16 here" in loaded.note
    assert same(model, state, loaded.loaded_keys, convs)


def test_vgg19_errors_name_the_keys_as_the_file_does(tmp_path, vgg19_file):
    _, state = vgg19_file
    path = save({k: v for k, v in state.items() if k != "features.0.bias"}, tmp_path / "v.pth")
    with pytest.raises(WeightsError, match=re.escape(f"{path}: features.0.bias is in the model")):
        load_torchvision(VGG19(fc_width=SMALL), path, "vgg19")


@pytest.mark.parametrize("name", ["fer2013", "vgg_face", "resnet50", "vgg19"])
def test_one_backbone_pass_gives_features_and_class_scores(name):
    """msff predict scores frames (or audio segments) and feeds the BLSTM from one pass."""
    from msff.heads.frame_cnn import build

    torch.manual_seed(0)
    if name == "fer2013":
        model, x = build(name, 7, SMALL, None).model, torch.rand(2, 1, 64, 64)
    else:
        model, x = BACKBONES[name](num_classes=7, fc_width=SMALL), tiny_input(name)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.classify(model.features(x)), model(x))
