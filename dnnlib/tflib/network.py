"""A data-only stand-in for the original's `dnnlib.tflib.network.Network`.

Unpickling stores the state dict (name, static_kwargs, components, build_func_name, variables) and
nothing else: `build_module_src` is kept as text for provenance and never executed.
"""

SUPPORTED_VERSIONS = (2, 3, 4)


class Network:
    """The pickled state of one TF1 network."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise ValueError(f"Network state must be a dict, got {type(state).__name__}")
        version = state.get("version")
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(f"unsupported Network pickle version {version!r}; expected one of {SUPPORTED_VERSIONS}")
        self.name = state.get("name")
        self.static_kwargs = dict(state.get("static_kwargs") or {})
        self.components = dict(state.get("components") or {})
        self.build_func_name = state.get("build_func_name")
        self.build_module_src = state.get("build_module_src", "")
        self.variables = {name: value for name, value in state.get("variables", [])}
        self.version = version

    def __repr__(self):
        return f"Network(name={self.name!r}, build_func_name={self.build_func_name!r}, {len(self.variables)} variables)"
