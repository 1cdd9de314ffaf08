"""Conditions of a conditional generator: covariates by name (`"age=72,sex=F"`), raw label vectors, sweeps.

A conditional generator (ModelConfig.label_size > 0) stores its covariates as the JSON of a
tf3dstylegan.data.labels.LabelEncoding in `config.label_encoding`; one imported from an original pickle has
none ("") and takes only raw label vectors. Every function raises ValueError with one line saying what is
wrong; the commands add the flag's name.
"""
import re
from typing import Dict, List, Optional, Tuple

import numpy as np

from tf3dstylegan.data.labels import LabelEncoding, parse_encoding
from tf3dstylegan.data.table import CONTINUOUS

MAX_SWEEP_VALUES = 1000


def label_encoding(G) -> Optional[LabelEncoding]:
    """The covariate encoding saved with generator G (or a ModelConfig), None when it has none."""
    cfg = getattr(G, "config", G)
    if not cfg.label_encoding:
        return None
    return parse_encoding(cfg.label_encoding)


def describe(G) -> str:
    """'unconditional', 'conditional on age, sex (label_size 3)' or, without saved names,
    'conditional (label_size 3, covariates not named)'."""
    cfg = getattr(G, "config", G)
    if not cfg.label_size:
        return "unconditional"
    encoding = label_encoding(cfg)
    names = f"on {', '.join(encoding.names)} " if encoding else ""
    return f"conditional {names}(label_size {cfg.label_size}{'' if encoding else ', covariates not named'})"


def example(encoding) -> str:
    """'age=<number>,sex=<F|M>': the form of a condition for this encoding."""
    return ",".join(f"{c.name}=<{'number' if c.kind == CONTINUOUS else '|'.join(c.categories)}>"
                    for c in encoding.covariates)


def parse_condition(text) -> Dict[str, str]:
    """'age=72,sex=F' -> {'age': '72', 'sex': 'F'} (values kept as text; the encoding parses them)."""
    condition = {}
    for part in str(text).split(","):
        name, equals, value = (s.strip() for s in part.partition("="))
        if not equals or not name or not value:
            raise ValueError(f"expected name=value pairs like age=72,sex=F, got {part.strip()!r} in {text!r}")
        if name in condition:
            raise ValueError(f"covariate {name!r} given twice in {text!r}")
        condition[name] = value
    return condition


def parse_vector(text) -> np.ndarray:
    """'0.1,0,1' -> float32 [3]; ValueError for anything but finite numbers."""
    try:
        vector = np.array([float(v) for v in str(text).split(",")], np.float32)
    except ValueError:
        raise ValueError(f"expected comma-separated numbers like 0.1,0,1, got {text!r}") from None
    if not np.all(np.isfinite(vector)):
        raise ValueError(f"expected finite numbers, got {text!r}")
    return vector


def encode_condition(G, condition) -> np.ndarray:
    """{name: value} (or 'age=72,sex=F') -> float32 [label_size] with G's saved encoding."""
    if isinstance(condition, str):
        condition = parse_condition(condition)
    require_conditional(G)
    encoding = label_encoding(G)
    if encoding is None:
        raise ValueError(f"this network is {describe(G)}: it has no saved covariate names; give a raw label vector "
                         f"of {G.config.label_size} values")
    return encoding.encode(condition)


def check_vector(G, vector) -> np.ndarray:
    """A raw label vector for G: float32 [label_size], finite."""
    require_conditional(G)
    vector = np.asarray(vector, np.float32).reshape(-1)
    if vector.size != G.config.label_size:
        raise ValueError(f"{vector.size} label values given, this network takes {G.config.label_size}")
    if not np.all(np.isfinite(vector)):
        raise ValueError("label values must be finite")
    return vector


def require_conditional(G):
    if not G.config.label_size:
        raise ValueError("this network is unconditional (label_size 0): it takes no condition")


def batch_labels(G, labels, count) -> Optional[np.ndarray]:
    """labels ([count, L], [L] broadcast, or None) for `count` volumes of G: float32 [count, L], or None for an
    unconditional G. ValueError when G needs labels and has none, or gets labels it cannot take."""
    size = G.config.label_size
    if labels is None:
        if size:
            raise ValueError(f"this network is {describe(G)}: labels [N, {size}] or [{size}] are required")
        return None
    require_conditional(G)
    labels = np.asarray(labels, np.float32)
    if labels.ndim == 1 and labels.shape[0] == size:
        labels = np.broadcast_to(labels, (count, size))
    if labels.shape != (count, size):
        raise ValueError(f"labels of shape {labels.shape} for {count} volumes: expected [{size}] or [{count}, {size}]")
    if not np.all(np.isfinite(labels)):
        raise ValueError("labels must be finite")
    return np.ascontiguousarray(labels)


def parse_sweep(text, encoding) -> Tuple[str, List]:
    """'age=50:90:9' (start:stop:count, both ends included), 'age=50,60' or 'sex=F,M' -> (name, values), the
    values checked against the encoding (numbers for a continuous covariate, known categories otherwise)."""
    name, equals, spec = (s.strip() for s in str(text).partition("="))
    if not equals or not name or not spec:
        raise ValueError(f"expected name=start:stop:count or name=value,value,..., got {text!r}")
    if name not in encoding.names:
        raise ValueError(f"unknown covariate {name!r} (expected {', '.join(encoding.names)})")
    covariate = encoding.covariates[encoding.names.index(name)]
    parts = [p.strip() for p in spec.split(":")] if ":" in spec else None
    if covariate.kind != CONTINUOUS:
        if parts is not None:
            raise ValueError(f"covariate {name!r} is categorical: list its categories, e.g. "
                             f"{name}={','.join(covariate.categories)}")
        values = [v.strip() for v in spec.split(",")]
        unknown = [v for v in values if v not in covariate.categories]
        if unknown:
            raise ValueError(f"unknown category {unknown[0]!r} of covariate {name!r} "
                             f"(expected {', '.join(covariate.categories)})")
    else:
        try:
            numbers = [float(p) for p in (parts if parts is not None else spec.split(","))]
        except ValueError:
            raise ValueError(f"covariate {name!r} is continuous: expected numbers in {spec!r}") from None
        if not np.all(np.isfinite(numbers)):
            raise ValueError(f"covariate {name!r} needs finite numbers, got {spec!r}")
        if parts is not None:
            if len(numbers) != 3 or not numbers[2].is_integer() or not 2 <= numbers[2] <= MAX_SWEEP_VALUES:
                raise ValueError(f"expected {name}=start:stop:count with an integer count in [2, "
                                 f"{MAX_SWEEP_VALUES}], got {spec!r}")
            with np.errstate(over="ignore", invalid="ignore"):
                numbers = np.linspace(numbers[0], numbers[1], int(numbers[2])).tolist()
            if not np.all(np.isfinite(numbers)):
                raise ValueError(f"{spec!r}: the range from {parts[0]} to {parts[1]} is too wide to divide")
        for number in numbers:
            covariate.standardised(number)  # ValueError naming the covariate: too far from the data
        values = numbers
    if len(values) > MAX_SWEEP_VALUES:
        raise ValueError(f"{len(values)} values: a sweep takes at most {MAX_SWEEP_VALUES}")
    value_names(name, values)  # distinct file names
    return name, values


def sweep_labels(G, name, values, base_condition=None) -> np.ndarray:
    """float32 [V, L]: G's encoding of base_condition ({name: value} or 'sex=F', all covariates but `name`)
    with covariate `name` at each of `values`."""
    require_conditional(G)
    if isinstance(base_condition, str):
        base_condition = parse_condition(base_condition)
    base_condition = dict(base_condition or {})
    if name in base_condition:
        raise ValueError(f"covariate {name!r} is swept: leave it out of the fixed condition")
    if len(values) == 0:
        raise ValueError(f"no values to sweep covariate {name!r} over")
    value_names(name, values)
    return np.stack([encode_condition(G, {**base_condition, name: value}) for value in values])


def value_names(name, values) -> List[str]:
    """File-name parts '<name>-<value>' of a sweep's values (6 significant digits); ValueError when two coincide."""
    safe = re.sub(r"[^A-Za-z0-9.+-]", "_", str(name))
    names = [f"{safe}-{re.sub(r'[^A-Za-z0-9.+-]', '_', v) if isinstance(v, str) else format(float(v), '.6g')}"
             for v in values]
    if len(set(names)) != len(names):
        raise ValueError(f"sweep values {values} repeat (or are equal to 6 significant digits)")
    return names
