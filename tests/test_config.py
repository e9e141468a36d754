import copy
import re

import pytest
import yaml

from msff import config
from msff.errors import ConfigError

from .conftest import REPO


def test_repo_config_is_valid(repo_config):
    config.check_label_map(repo_config["labels"])
    assert config.preset(repo_config)["description"]


def test_presets_are_side_by_side_with_the_same_keys(repo_config):
    paper, cpu = repo_config["presets"]["paper"], repo_config["presets"]["cpu"]
    for section in ("frames", "faces", "audio", "models"):
        assert paper[section].keys() == cpu[section].keys()
    # The paper's sizes, as DESIGN.md gives them.
    assert paper["faces"]["size"] == 256
    assert paper["audio"]["scales"] == [1.0, 0.75, 0.5, 0.25]
    assert paper["audio"]["image_size"] == 224
    assert paper["audio"]["segment_ms"] == 300 and paper["audio"]["overlap"] == 0.5
    assert paper["frames"]["fps"] is None
    assert paper["models"]["fc_width"] == 4096 and paper["models"]["blstm_hidden"] == 256
    assert paper["models"]["window"] == 8 and paper["models"]["c3d_frames"] == 16
    assert paper["models"]["c3d_size"] == 112 and paper["models"]["cnn_crop"] == 224
    assert (paper["models"]["optimizer"], paper["models"]["lr"]) == ("sgd", 0.01)
    assert paper["models"]["audio_cnn_lr"] is None  # the paper trains every net at one rate
    assert repo_config["train"]["batch_size"] == 8 and repo_config["train"]["lr_decay"] == 0.95
    # cpu is smaller everywhere it differs.
    assert cpu["faces"]["size"] < paper["faces"]["size"]
    assert cpu["audio"]["image_size"] < paper["audio"]["image_size"]


def test_audio_cnn_trains_at_its_own_rate_batch_epochs_and_schedule_only_when_set(repo_config):
    own = ("lr", "batch_size", "epochs", "schedule", "weight_decay", "mixup", "l2_sp")
    for name in ("paper", "cpu"):
        heads = config.head_arguments(dict(repo_config, preset=name))
        models = repo_config["presets"][name]["models"]
        audio, shared = heads["audio_cnn"]["settings"], heads["blstm"]["settings"]
        assert audio["lr"] == (models["audio_cnn_lr"] or models["lr"])
        assert audio["batch_size"] == (
            models["audio_cnn_batch_size"] or repo_config["train"]["batch_size"]
        )
        assert audio["epochs"] == (models["audio_cnn_epochs"] or models["epochs"])
        assert audio["schedule"] == models["audio_cnn_schedule"]
        wd = models["audio_cnn_weight_decay"]
        assert audio["weight_decay"] == (repo_config["train"]["weight_decay"] if wd is None else wd)
        assert "schedule" not in shared  # the other heads keep the per-epoch decay
        assert shared["lr"] == models["lr"] == heads["frame_cnn"]["settings"]["lr"]
        assert {k: v for k, v in audio.items() if k not in own} == {
            k: v for k, v in shared.items() if k not in own
        }  # nothing else changes
    # cpu: the spectrogram CNN's own batch, epochs, schedule and weight decay
    assert heads["audio_cnn"]["settings"] != heads["blstm"]["settings"]


def test_the_paper_preset_keeps_stft_images_and_vgg19_as_the_paper_trains_them(repo_config):
    paper = repo_config["presets"]["paper"]
    assert paper["audio"]["spectrogram"] == "stft"
    audio_cnn = config.head_arguments(dict(repo_config, preset="paper"))["audio_cnn"]
    assert (audio_cnn["layers"], audio_cnn["pool"], audio_cnn["standardise"]) == ("E", 7, "none")
    assert audio_cnn["freq_masks"] == audio_cnn["time_masks"] == 0
    assert audio_cnn["quiet_db"] is None and audio_cnn["dropout"] == 0.5
    assert audio_cnn["settings"]["weight_decay"] == repo_config["train"]["weight_decay"]
    assert audio_cnn["settings"]["batch_size"] == 8 and audio_cnn["settings"]["epochs"] == 30
    assert audio_cnn["settings"]["schedule"] == "exponential"


def test_each_head_gets_only_its_own_preset_values(repo_config):
    """A rule's params are its head's arguments: audio_cnn_lr reaches the audio CNN only."""
    changed = copy.deepcopy(repo_config)
    changed["presets"]["cpu"]["models"]["audio_cnn_lr"] = 3e-4
    before, after = config.head_arguments(repo_config), config.head_arguments(changed)
    assert [h for h in before if before[h] != after[h]] == ["audio_cnn"]
    changed["presets"]["cpu"]["models"]["c3d_width"] = 0.5
    after = config.head_arguments(changed)
    assert [h for h in before if before[h] != after[h]] == ["c3d", "audio_cnn"]


def test_mixup_reaches_the_heads_of_its_branch_and_the_paper_has_none(repo_config):
    for name in ("paper", "cpu"):
        heads = config.head_arguments(dict(repo_config, preset=name))
        mixup = repo_config["presets"][name]["models"]["mixup"]
        assert heads["frame_cnn"]["settings"]["mixup"] == mixup["face"]
        assert heads["blstm"]["settings"]["mixup"] == mixup["face"]
        assert heads["audio_cnn"]["settings"]["mixup"] == mixup["audio"]
        assert heads["audio_blstm"]["settings"]["mixup"] == mixup["audio"]
        assert "mixup" not in heads["c3d"]["settings"]  # trains without: not measured with it
    assert repo_config["presets"]["paper"]["models"]["mixup"] == {"face": 0, "audio": 0}
    changed = copy.deepcopy(repo_config)
    changed["presets"]["cpu"]["models"]["mixup"] = {"face": 0.4, "audio": 0.3}
    before, after = config.head_arguments(repo_config), config.head_arguments(changed)
    assert [h for h in before if before[h] != after[h]] == [
        "frame_cnn",
        "blstm",
        "audio_blstm",
        "audio_cnn",
    ]


def test_l2_sp_reaches_the_face_heads_only_and_the_paper_has_none(repo_config):
    """The face heads start from FER2013; a prior on the audio heads' random start is none."""
    assert repo_config["presets"]["paper"]["models"]["l2_sp"] == 0
    changed = copy.deepcopy(repo_config)
    changed["presets"]["cpu"]["models"]["l2_sp"] = 7.5
    before, after = config.head_arguments(repo_config), config.head_arguments(changed)
    assert [h for h in before if before[h] != after[h]] == ["frame_cnn", "blstm"]
    assert after["frame_cnn"]["settings"]["l2_sp"] == after["blstm"]["settings"]["l2_sp"] == 7.5


def test_shift_test_reaches_the_frame_cnn_only_and_the_paper_has_none(repo_config):
    """Shifted test-time views score frames; the BLSTM's rule gets no argument of them."""
    assert repo_config["presets"]["paper"]["models"]["shift_test"] == 0
    changed = copy.deepcopy(repo_config)
    changed["presets"]["cpu"]["models"]["shift_test"] = 0.125
    before, after = config.head_arguments(repo_config), config.head_arguments(changed)
    assert [h for h in before if before[h] != after[h]] == ["frame_cnn"]
    assert after["frame_cnn"]["shift_test"] == 0.125


@pytest.mark.parametrize(
    "path, key",
    [
        (("sampels",), "(top level)"),
        (("presets", "cpu", "faces", "sise"), "presets/cpu/faces"),
        (("labels", "mapping"), "labels"),
    ],
)
def test_misspelt_key_is_named(tmp_path, repo_config, path, key):
    bad = copy.deepcopy(repo_config)
    node = bad
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = 1
    with pytest.raises(ConfigError, match=f"{re.escape(key)}: .*'{path[-1]}' was unexpected"):
        config.validate(bad, "config", "config.yaml")


def test_out_of_range_value_is_named(repo_config):
    bad = copy.deepcopy(repo_config)
    bad["presets"]["cpu"]["audio"]["overlap"] = 1.5
    with pytest.raises(ConfigError, match="presets/cpu/audio/overlap"):
        config.validate(bad, "config", "config.yaml")


def test_crossval_fuses_the_face_models_the_workflow_fuses(repo_config):
    """C3D cross-validated beside the others is fused where the preset fuses it, not in cpu."""
    trained = ["fer2013_frames", "fer2013_blstm", "c3d", "hog_svm"]
    cpu = config.fused_models(repo_config)
    assert config.crossval_fused(cpu, trained) == ["fer2013_frames", "fer2013_blstm", "hog_svm"]
    paper = config.fused_models(dict(repo_config, preset="paper"))
    assert config.crossval_fused(paper, trained) == ["fer2013_blstm", "c3d"]
    # FER2013 zero-shot is cross-validated untrained; an audio-only fusion: every face model
    assert config.crossval_fused(["fer2013_zeroshot", "c3d"], trained) == [
        "fer2013_zeroshot",
        "c3d",
    ]
    assert config.crossval_fused(["opensmile_svm"], trained) == trained


def test_the_fused_models_follow_the_preset_unless_named(repo_config):
    """The paper fuses C3D; the cpu preset trains it but leaves it out (near the majority),
    and fuses FER2013's frame CNN (started from its classifier) beside its BLSTM."""
    cfg = copy.deepcopy(repo_config)
    assert cfg["fusion"]["models"] is None
    assert config.fused_models(cfg) == [
        "fer2013_frames",
        "fer2013_blstm",
        "hog_svm",
        "vgg19_blstm_audio",
        "opensmile_svm",
    ]
    paper = dict(cfg, preset="paper")
    assert config.fused_models(paper) == [
        "fer2013_blstm",
        "c3d",
        "vgg19_blstm_audio",
        "opensmile_svm",
    ]
    # The preset's list meets the models the config runs: other backbones, audio off.
    cfg["models"] |= dict(face_backbones=["vgg_face", "resnet50"], audio_cnn=False)
    assert config.fused_models(cfg) == [
        "hog_svm",
        "vgg_face_blstm",
        "resnet50_blstm",
        "opensmile_svm",
    ]
    # A list in fusion.models is taken as it is, C3D included.
    cfg["fusion"]["models"] = ["c3d", "opensmile_svm"]
    assert config.fused_models(cfg) == ["c3d", "opensmile_svm"]
    cfg["fusion"]["models"] = ["c3d", "fer2013_blstm"]  # fer2013 is not a backbone here
    with pytest.raises(ConfigError, match=r"fusion.models: \['fer2013_blstm'\] are not models"):
        config.fused_models(cfg)
    cfg["fusion"]["models"] = None
    del cfg["presets"]["cpu"]["fusion_models"]
    with pytest.raises(ConfigError, match="preset 'cpu' has no fusion_models"):
        config.fused_models(cfg)
    cfg["presets"]["cpu"]["fusion_models"] = ["c3d"]
    cfg["models"]["c3d"] = False
    with pytest.raises(ConfigError, match=r"fusion_models \['c3d'\]: none of them"):
        config.fused_models(cfg)
    cfg["presets"]["cpu"]["fusion_models"] = ["c3d_blstm"]
    with pytest.raises(ConfigError, match="presets/cpu/fusion_models/0"):
        config.validate(cfg, "config", "config.yaml")


def test_the_fusion_rule_follows_the_preset_unless_set(repo_config):
    """The cpu preset weighs its fused models equally; the paper preset searches the grid."""
    cfg = copy.deepcopy(repo_config)
    assert cfg["fusion"]["rule"] is None
    assert config.fusion_settings(cfg)["rule"] == "equal"
    assert config.fusion_settings(dict(cfg, preset="paper"))["rule"] == "auto"
    assert config.fusion_settings(cfg)["step"] == cfg["fusion"]["step"]
    cfg["fusion"]["rule"] = "one-se"
    assert config.fusion_settings(cfg)["rule"] == "one-se"
    assert repo_config["fusion"]["rule"] is None  # the config itself is not changed
    cfg["fusion"]["rule"] = None
    cfg["fusion"]["out_of_fold"] = 3  # trainings for a search that equal weights never run
    with pytest.raises(ConfigError, match="rule 'equal' searches nothing"):
        config.fusion_settings(cfg)
    cfg["fusion"]["out_of_fold"] = 0
    del cfg["presets"]["cpu"]["fusion_rule"]
    with pytest.raises(ConfigError, match="preset 'cpu' has no fusion_rule"):
        config.fusion_settings(cfg)
    cfg["presets"]["cpu"]["fusion_rule"] = "median"
    with pytest.raises(ConfigError, match="presets/cpu/fusion_rule"):
        config.validate(cfg, "config", "config.yaml")


def test_unknown_preset(repo_config):
    bad = dict(repo_config, preset="gpu")
    with pytest.raises(ConfigError, match="preset='gpu'"):
        config.preset(bad)


def test_label_map_target_must_be_a_class(repo_config):
    labels = copy.deepcopy(repo_config["labels"])
    labels["map"]["calm"] = "relaxed"
    with pytest.raises(ConfigError, match="'calm' -> 'relaxed'"):
        config.check_label_map(labels)


def test_class_of_maps_drops_and_refuses(repo_config):
    labels = repo_config["labels"]
    assert config.class_of("fearful", labels) == "fear"
    assert config.class_of("Happy", labels) == "happy"
    assert config.class_of("calm", labels) is None
    with pytest.raises(ConfigError, match="'bored' is not a class"):
        config.class_of("bored", labels)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        config.load(tmp_path / "nope.yaml")


def test_config_file_round_trip(tmp_path):
    loaded = config.load(REPO / "config.yaml")
    (tmp_path / "again.yaml").write_text(yaml.safe_dump(loaded))
    assert config.load(tmp_path / "again.yaml") == loaded
    assert loaded == yaml.safe_load((REPO / "config.yaml").read_text())  # nothing added


def test_config_file_that_is_not_yaml_is_named(tmp_path):
    (tmp_path / "broken.yaml").write_text("seed: [2018\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        config.load(tmp_path / "broken.yaml")
