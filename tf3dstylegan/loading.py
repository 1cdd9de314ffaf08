"""`load_network(path)`: the networks in an original TF1 pickle, a `.keras` file, a folder of `.keras` files
(`convert` output) or a training run folder, each checked before anything large is allocated.

`.keras` files are read with Keras' safe mode (no code from the file runs) after the configuration they
claim has been checked against the size of the weights they store, so a tiny file cannot make us build a
huge network. Run folders restore only what inference needs (G, D, G_ema) from their newest readable
checkpoint.
"""
import json
import zipfile
from pathlib import Path

from tf3dstylegan.config import load_config, load_model_config
from tf3dstylegan.data.labels import LabelEncoding
from tf3dstylegan.legacy import convert_legacy
from tf3dstylegan.networks.loaded import LoadedNetworks

KERAS_WEIGHTS = "model.weights.h5"
KERAS_CONFIG = "config.json"
MAX_CONFIG_BYTES = 10 * 2 ** 20


class NetworkFileError(ValueError):
    """A file or folder that does not hold loadable networks."""


def load_network(path, fused_modconv=None, log=print) -> LoadedNetworks:
    """G, D and G_ema from a legacy .pkl, a .keras file, or a folder (convert output or training run)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "G_ema.keras").is_file():
            return _load_keras_folder(path)
        return load_run_networks(path, log=log)
    if path.suffix == ".keras":
        model = load_keras_model(path)
        return LoadedNetworks(G=model, D=None, G_ema=model, config=model.config, source=str(path))
    return convert_legacy(path, fused_modconv=fused_modconv)


def _claimed_config(path, archive):
    """The ModelConfig a .keras archive's config.json claims (top-level model's `config` argument)."""
    info = archive.getinfo(KERAS_CONFIG)
    if info.file_size > MAX_CONFIG_BYTES:
        raise NetworkFileError(f"{path}: {KERAS_CONFIG} is {info.file_size:,} bytes, not a model description")
    try:
        description = json.loads(archive.read(KERAS_CONFIG))
        claimed = description["config"]["config"]
        if not isinstance(claimed, dict):  # a preset name or a .json path would be read from outside the archive
            raise ValueError(f"its model config is a {type(claimed).__name__}, not the config itself")
        cfg = load_model_config(claimed)
        if cfg.label_encoding:  # checked here, so that a bad one is named with the file
            LabelEncoding.from_json(json.loads(cfg.label_encoding))
        return description.get("class_name"), cfg
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise NetworkFileError(f"{path}: not a tf3dstylegan network ({_first_line(err)})") from None


def load_keras_model(path, expected=("Generator",)):
    """A Generator or Discriminator from a .keras file (safe mode), its claimed size checked first."""
    import keras
    import tf3dstylegan.networks  # noqa: F401  (registers our classes with Keras)
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if not {KERAS_CONFIG, KERAS_WEIGHTS} <= names:
                raise NetworkFileError(f"{path}: not a Keras model archive (no {KERAS_CONFIG} or {KERAS_WEIGHTS})")
            class_name, cfg = _claimed_config(path, archive)
            stored = archive.getinfo(KERAS_WEIGHTS).file_size
    except zipfile.BadZipFile:
        raise NetworkFileError(f"{path}: not a .keras file (not a zip archive)") from None
    if class_name not in expected:
        raise NetworkFileError(f"{path}: holds a {class_name}, expected {' or '.join(expected)}")
    if class_name == "Generator" and cfg.min_generator_bytes() > stored * 1.01 + 4096:
        raise NetworkFileError(f"{path}: claims a {cfg.img_shape} generator with fmap_max {cfg.fmap_max} that needs "
                               f"at least {cfg.min_generator_bytes():,} bytes of weights, but stores {stored:,}")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except (ValueError, OSError, KeyError, TypeError, AttributeError) as err:  # e.g. a string as a dtype policy
        raise NetworkFileError(f"{path}: not a loadable .keras model ({str(err).splitlines()[0]})") from None


def _first_line(err) -> str:
    """The first line of an exception's message (a KeyError's key unquoted), or its type's name."""
    text = str(err.args[0]) if err.args else ""
    return text.splitlines()[0] if text.strip() else type(err).__name__


def claimed_config(path):
    """The ModelConfig a network file or folder (as load_network takes) claims, read without building anything."""
    path = Path(path)
    if path.is_dir():
        if (path / "G_ema.keras").is_file():
            return claimed_config(path / "G_ema.keras")
        return run_config(path).model
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                return _claimed_config(path, archive)[1]
        except (zipfile.BadZipFile, KeyError):
            raise NetworkFileError(f"{path}: not a .keras file (not a zip archive with {KERAS_CONFIG})") from None
    from tf3dstylegan.legacy import config_from_states, read_legacy_pickle
    G, D, _ = read_legacy_pickle(path)
    return config_from_states(G, D, path)[0].model


def _load_keras_folder(path):
    """A folder of G.keras, D.keras and G_ema.keras (what `convert` writes)."""
    G_ema = load_keras_model(path / "G_ema.keras")
    G = load_keras_model(path / "G.keras") if (path / "G.keras").is_file() else G_ema
    D = load_keras_model(path / "D.keras", ("Discriminator",)) if (path / "D.keras").is_file() else None
    return LoadedNetworks(G=G, D=D, G_ema=G_ema, config=G_ema.config, source=str(path))


def run_config(run_dir):
    """The preset Config a training run folder was trained with (from its training_options.json)."""
    options = Path(run_dir) / "training_options.json"
    if not options.is_file():
        raise NetworkFileError(f"{run_dir}: not a training run folder (no training_options.json)")
    try:
        return load_config(json.loads(options.read_text(encoding="utf-8"))["config"])
    except (ValueError, KeyError, TypeError) as err:
        raise NetworkFileError(f"{options}: unreadable ({_first_line(err)})") from None


def load_run_networks(run_dir, log=print):
    """LoadedNetworks (G, D, G_ema, config) from the newest readable checkpoint of a training run folder: the portable
    npz checkpoints on any backend, TensorFlow's on TensorFlow; elsewhere a TensorFlow run's newest snapshot
    (G_ema only)."""
    from tf3dstylegan import backend, checkpoints
    from tf3dstylegan.networks import build_discriminator, build_generator
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    folder = run_dir / "checkpoints"
    layouts = {layout for _, layout in checkpoints.candidates(folder)}
    if layouts and "npz" not in layouts and not backend.is_tensorflow():
        snapshots = sorted(run_dir.glob("network-snapshot-*.keras"))
        if not snapshots:
            raise NetworkFileError(f"{run_dir}: its checkpoints are TensorFlow's and it has no .keras snapshot to "
                                   f"read on the {backend.name()} backend")
        log(f"{run_dir}: TensorFlow checkpoints; on {backend.name()} its newest snapshot {snapshots[-1].name} "
            f"(G_ema) is read")
        return load_network(snapshots[-1])
    models = {"G": build_generator(cfg), "D": build_discriminator(cfg), "G_ema": build_generator(cfg)}
    try:
        if "npz" in layouts:
            keys = checkpoints.variable_keys({name: model.variables for name, model in models.items()})
            found, arrays = checkpoints.restore_newest_arrays(folder, checkpoints.expected_arrays(keys), log)
            for key, var in keys.items():
                var.assign(arrays[key])
        else:
            from tf3dstylegan.backend.tensorflow import checkpoints as tf_checkpoints
            found = tf_checkpoints.restore_newest(folder, lambda layout: tf_checkpoints.nodes(models, layout=layout),
                                                  complete=False, log=log)
    except checkpoints.CheckpointError as err:
        raise NetworkFileError(str(err)) from None
    return LoadedNetworks(config=cfg.model, source=str(found), **models)
