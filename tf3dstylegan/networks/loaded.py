"""`LoadedNetworks`: the networks read from a file or a run folder, with where they came from."""
import dataclasses
from typing import Optional

from tf3dstylegan.config import ModelConfig


@dataclasses.dataclass
class LoadedNetworks:
    """G, D (None when the source has none) and G_ema, their ModelConfig, the source path and the precision the
    source computed in (legacy pickles without a dtype were float16 in the original; we compute in float32)."""
    G: object
    D: Optional[object]
    G_ema: object
    config: ModelConfig
    source: str
    source_dtype: str = "float32"
