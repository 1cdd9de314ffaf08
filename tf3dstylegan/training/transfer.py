"""Starting a run from trained networks: G, D and G_ema copied from a network file, on every backend."""

MODELS = ("G", "D", "G_ema")


def initialize_from(path, models, config_name, log=print):
    """Copy G, D and G_ema from a network file (legacy .pkl, .keras, or a folder of them) into `models` ({name:
    Keras model}), matching variables by their Keras paths and shapes; ValueError naming the file when they
    differ."""
    from tf3dstylegan.loading import load_network
    loaded = load_network(path, log=log)
    for name in MODELS:
        source, target = getattr(loaded, name), models[name]
        if source is None:
            log(f"{path} holds no {name}: {name} starts from random weights")
            continue
        by_path = {v.path: v for v in source.variables}
        targets = {v.path: v for v in target.variables}
        mismatched = sorted(p for p, v in targets.items()
                            if p not in by_path or tuple(by_path[p].shape) != tuple(v.shape))
        if mismatched or len(by_path) != len(targets):
            raise ValueError(f"{path}: {name} does not match config {config_name!r} "
                             f"(different variables, e.g. {mismatched[:3]})")
        for var_path, dst in targets.items():
            dst.assign(by_path[var_path])
