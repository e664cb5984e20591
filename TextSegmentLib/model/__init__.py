"""The TextSegment model: a light text + box + point promptable 2D slice segmenter.

Example:
    >>> from TextSegmentLib.model import build_model
    >>> model = build_model({"image_size": 64, "embed_dim": 32, "decoder_heads": 4, "decoder_mlp_dim": 64})
    >>> sum(p.numel() for p in model.parameters()) < 10_000_000
    True
"""

from pathlib import Path
from typing import Optional

from .config import ConfigLike, ModelConfig, TextEncoderSpec, as_config
from .mask_decoder import DecoderOutput
from .segment_model import TextSegmentModel
from .text_encoder import TextEmbedding, TextEncoder, TextEncoderUnavailable


def build_model(config: ConfigLike = None, text_base_dir: Optional[Path] = None) -> TextSegmentModel:
    """Build a randomly initialised model from a :class:`ModelConfig`, a dict or ``None`` (the defaults)."""
    return TextSegmentModel(as_config(config), text_base_dir)


__all__ = [
    "DecoderOutput",
    "ModelConfig",
    "TextEmbedding",
    "TextEncoder",
    "TextEncoderSpec",
    "TextEncoderUnavailable",
    "TextSegmentModel",
    "build_model",
]
