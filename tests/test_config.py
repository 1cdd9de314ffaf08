"""Presets and the typed config object."""
import json

import pytest

import tf3dstylegan
from tf3dstylegan.config import Config, load_config, parse_override

TABLE1 = {"2mm-fd96": (96, 96, (80, 96, 112)), "2mm-fd64": (64, 64, (80, 96, 112)),
          "2mm-fd32": (32, 128, (80, 96, 112)), "2mm-fd16": (16, 64, (80, 96, 112)),
          "1mm-fd16": (16, 64, (160, 192, 224))}
ORIGINAL_IDS = ["Gorig-Dres-3d-1mm-base567", "Gorig-Dorig-3d-1mm-base567", "Gorig-Dorig-r1-3d-1mm-base567",
                "Gorig-Dres-3d-2mm-base567", "Gorig-Dres-R1-3d-2mm-base567", "Gorig-Dres-R2-3d-2mm-base567",
                "Gorig-Dres-DeepFil-R1-3d-2mm-base567", "Gorig-Dres-R1-3d-MG-base16162"]


@pytest.mark.parametrize("name", sorted(TABLE1))
def test_table1_presets(name):
    cfg = load_config(name)
    fmaps, latent, shape = TABLE1[name]
    assert (cfg.fmap_min, cfg.fmap_max, cfg.latent_size, cfg.dlatent_size, cfg.img_shape) == \
        (fmaps, fmaps, latent, latent, shape)
    assert cfg.g_architecture == "orig" and cfg.d_architecture == "resnet" and cfg.d_loss == "logistic"
    assert cfg.g_reg_interval == 16 and cfg.voxel_size == (1.0 if name.startswith("1mm") else 2.0)


def test_original_ids_exist_with_their_values():
    assert set(ORIGINAL_IDS) <= set(tf3dstylegan.available_presets())
    r2 = load_config("Gorig-Dres-R2-3d-2mm-base567")
    assert (r2.fmap_max, r2.latent_size, r2.d_loss, r2.batch_size, r2.g_reg_interval) == (16, 96, "logistic_r2", 2, None)
    mg = load_config("Gorig-Dres-R1-3d-MG-base16162")
    assert mg.base_size == (16, 16, 2) and mg.no_noise and mg.d_loss == "logistic_r1"


def test_overrides_files_and_round_trip(tmp_path):
    cfg = load_config("2mm-fd96", batch_size=4)
    assert cfg.batch_size == 4 and cfg.replace(g_lr=0.001).g_lr == 0.001
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    assert load_config(tmp_path / "c.json") == cfg
    assert json.loads((tmp_path / "c.json").read_text())["name"] == "2mm-fd96"
    assert load_config({"base_size": [4, 4, 4], "img_shape": [32, 32, 32]}).resolution_log2 == 5
    assert parse_override("batch_size=2") == ("batch_size", 2)
    assert parse_override("d_loss=logistic_r1") == ("d_loss", "logistic_r1")
    with pytest.raises(ValueError, match="config field d_loss: must be one of"):
        Config(d_loss="wgan")
    with pytest.raises(ValueError, match="key=value"):
        parse_override("batch_size")


@pytest.mark.parametrize("field, value, message", [
    ("base_size", 5, "base_size: expected a list of 3 integers"),
    ("base_size", [0, 6, 7], "base_size: must be 3 positive integers"),
    ("batch_size", "abc", "batch_size: expected an integer, got 'abc'"),
    ("batch_size", 0, "batch_size: must be >= 1"),
    ("fmap_max", 0, "fmap_max: must be in"),
    ("resolution_log2", 4.5, "resolution_log2: expected an integer"),
    ("resolution_log2", 40, "resolution_log2: must be in"),
    ("g_lr", float("nan"), "g_lr: expected a finite number"),
    ("g_lr", "0.1", "g_lr: expected a finite number"),
    ("no_noise", 1, "no_noise: expected true or false"),
    ("name", "../outside", "name: must be a plain name"),
    ("d_reg_interval", 0, "d_reg_interval: must be >= 1"),
    ("g_architecture", "unet", "g_architecture: must be one of"),
])
def test_every_field_is_type_and_range_checked(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        load_config("2mm-fd16", **{field: value})


def test_model_and_training_configs_are_separate(tmp_path):
    from tf3dstylegan.config import ModelConfig, TrainingConfig, load_model_config
    cfg = load_config("2mm-fd16", batch_size=2)
    assert isinstance(cfg.model, ModelConfig) and not hasattr(cfg.model, "batch_size")
    assert isinstance(cfg.training, TrainingConfig) and cfg.training.batch_size == 2
    assert load_model_config(cfg.to_dict()) == cfg.model  # a dict with training fields (older .keras files)
    assert load_model_config("2mm-fd16") == cfg.model
    with pytest.raises(ValueError, match="unknown config fields"):
        load_model_config({"fmap_maxx": 3})
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="a config file must hold a JSON object"):
        load_config(tmp_path / "list.json")
