"""SAM 2.1 in our engine: the Hiera image encoder, the mask decoder with high-resolution
features, and memory-based propagation through stacks (work in progress: the encoder)."""

from .hiera import FpnNeck, Hiera, HieraConfig, HieraImageEncoder, SineEmbedding2d

__all__ = ["FpnNeck", "Hiera", "HieraConfig", "HieraImageEncoder", "SineEmbedding2d"]
