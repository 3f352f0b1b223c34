"""SAM 2.1 in our engine (docs/sam2.md): the Hiera image encoder (:mod:`.hiera`), the
prompt heads (:mod:`.decoder`), memory (:mod:`.memory`, :mod:`.memory_bank`), the model
and its tracking step (:mod:`.model`), propagation through a stack (:mod:`.propagation`),
2D prompting (:mod:`.image_predictor`) and Meta's checkpoints (:mod:`.checkpoint`)."""

from .checkpoint import SAM2_CONFIGS, infer_sam2_config, is_sam2_state_dict, load_sam2
from .hiera import FpnNeck, Hiera, HieraConfig, HieraImageEncoder, SineEmbedding2d
from .model import ImageFeatures, Sam2Config, Sam2Model
from .propagation import Sam2Prompts, Sam2Tracker

__all__ = [
    "SAM2_CONFIGS",
    "FpnNeck",
    "Hiera",
    "HieraConfig",
    "HieraImageEncoder",
    "ImageFeatures",
    "Sam2Prompts",
    "Sam2Config",
    "Sam2Model",
    "Sam2Tracker",
    "SineEmbedding2d",
    "infer_sam2_config",
    "is_sam2_state_dict",
    "load_sam2",
]
