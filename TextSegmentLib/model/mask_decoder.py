"""Mask decoder: two-way transformer over prompt tokens and the image, upscaling to input-resolution mask logits,
an IoU head and a presence head (is the target on this slice at all)."""

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .config import ModelConfig
from .layers import MLP, LayerNorm2d
from .transformer import TwoWayTransformer

NUM_OUTPUT_TOKENS = 3  # IoU, mask, presence
ABSENT_LOGIT = -20.0


@dataclass
class DecoderOutput:
    """``masks`` (B, 1, S, S) logits, ``iou`` (B, 1) predicted IoU, ``presence`` (B, 1) logit."""

    masks: torch.Tensor
    iou: torch.Tensor
    presence: torch.Tensor


class MaskDecoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.output_tokens = nn.Embedding(NUM_OUTPUT_TOKENS, dim)
        self.transformer = TwoWayTransformer(
            config.decoder_depth, dim, config.decoder_heads, config.decoder_mlp_dim, config.attention_downsample
        )
        self.upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, 2, 2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, 2, 2),
            nn.GELU(),
        )
        self.hypernet = MLP(dim, dim, dim // 8, num_layers=3, relu=True)
        self.iou_head = MLP(dim, dim, 1, num_layers=3, relu=True)
        self.presence_head = MLP(dim, dim, 1, num_layers=3, relu=True)

    def forward(
        self,
        image: torch.Tensor,
        image_pe: torch.Tensor,
        sentence: torch.Tensor,
        sparse: torch.Tensor,
        sparse_valid: torch.Tensor,
        dense: torch.Tensor,
        presence_threshold: Optional[float] = None,
    ) -> DecoderOutput:
        b = image.shape[0]
        out_tokens = self.output_tokens.weight.unsqueeze(0).expand(b, -1, -1)
        tokens = torch.cat([out_tokens, sparse], dim=1)
        always = torch.ones(b, NUM_OUTPUT_TOKENS, dtype=torch.bool, device=image.device)
        mask = torch.cat([always, sparse_valid], dim=1)
        hs, src = self.transformer(image + dense, image_pe, sentence, tokens, mask)
        iou = self.iou_head(hs[:, 0])
        presence = self.presence_head(hs[:, 2])
        g = image.shape[-1]
        size = g * 4
        keep = torch.arange(b, device=image.device)
        if presence_threshold is not None:
            keep = torch.nonzero(presence[:, 0] >= presence_threshold).flatten()
        masks = torch.full((b, 1, size, size), ABSENT_LOGIT, dtype=hs.dtype, device=image.device)
        if keep.numel():
            up = self.upscaling(src[keep].transpose(1, 2).reshape(-1, src.shape[-1], g, g))
            hyper = self.hypernet(hs[keep, 1])
            masks[keep] = (hyper.unsqueeze(1) @ up.flatten(2)).reshape(-1, 1, size, size).to(masks.dtype)
        return DecoderOutput(masks=masks, iou=iou, presence=presence)
