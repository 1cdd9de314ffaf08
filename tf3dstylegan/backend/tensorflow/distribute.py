"""Choice of tf.distribute strategy: several GPUs, one device, or several machines (TF_CONFIG)."""
import os

import tensorflow as tf

from tf3dstylegan.training.options import STRATEGIES


def make_strategy(kind="auto", gpus=None, devices=None):
    """A tf.distribute.Strategy.

    kind: "auto" (MultiWorkerMirroredStrategy when TF_CONFIG is set, MirroredStrategy over the GPUs when
    there are several, else the default strategy), "default", "mirrored" or "multiworker".
    gpus: use only the first `gpus` GPUs. devices: explicit device names for "mirrored" (tests use
    logical CPUs).
    """
    if kind not in STRATEGIES:
        raise ValueError(f"unknown strategy {kind!r}: expected one of {STRATEGIES}")
    if kind == "multiworker" or (kind == "auto" and os.environ.get("TF_CONFIG")):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if devices is None:
        found = [d.name.replace("/physical_device:", "/") for d in tf.config.list_physical_devices("GPU")]
        if gpus is not None:
            if gpus > len(found):
                raise ValueError(f"--gpus {gpus} asked for, but only {len(found)} GPU(s) are visible")
            found = found[:gpus]
        devices = found
    if kind == "mirrored" or (kind == "auto" and len(devices) > 1):
        return tf.distribute.MirroredStrategy(devices=devices or None)
    return tf.distribute.get_strategy()


def describe(strategy) -> str:
    """e.g. 'MirroredStrategy, 2 replica(s)'."""
    name = "default strategy"
    for kind, kind_name in ((tf.distribute.MultiWorkerMirroredStrategy, "MultiWorkerMirroredStrategy"),
                            (tf.distribute.MirroredStrategy, "MirroredStrategy")):
        if isinstance(strategy, kind):
            name = kind_name
            break
    return f"{name}, {strategy.num_replicas_in_sync} replica(s)"
