"""Mask decoder: two-way transformer over prompt tokens and the image, upscaling to input-resolution mask logits,
an IoU head and a presence head (is the target on this slice at all).

With ``detail_channels`` > 0 the two upscaling steps (S/4 -> S/2 -> S) each add features computed from the input
image at that resolution (:class:`DetailPath`), so mask edges can follow the image finer than the embedding grid.
The skips' output projections start at zero: a decoder trained without them keeps its behaviour when they are added.
"""

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .config import ModelConfig
from .image_encoder import PIXEL_MEAN, PIXEL_STD
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


class DetailPath(nn.Module):
    """Image (B, 3, S, S) in [0, 255] -> features at S/2 and S projected to the two upscaling widths."""

    def __init__(self, in_chans: int, channels: int, half_out: int, full_out: int) -> None:
        super().__init__()
        self.to_half = nn.Sequential(
            nn.Conv2d(in_chans, channels, 3, 2, 1),
            LayerNorm2d(channels),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, 1, 1),
        )
        self.to_full = nn.Sequential(nn.Conv2d(in_chans, channels, 3, 1, 1), LayerNorm2d(channels), nn.GELU())
        self.half_proj = nn.Conv2d(channels, half_out, 1)
        self.full_proj = nn.Conv2d(channels, full_out, 1)
        for proj in (self.half_proj, self.full_proj):
            nn.init.zeros_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(self, images: torch.Tensor):
        x = ((images / 255.0 - PIXEL_MEAN) / PIXEL_STD).contiguous(memory_format=torch.channels_last)
        return self.half_proj(nn.functional.gelu(self.to_half(x))), self.full_proj(self.to_full(x))


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
        self.detail = (
            DetailPath(config.in_chans, config.detail_channels, dim // 4, dim // 8) if config.detail_channels else None
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
        images: Optional[torch.Tensor] = None,
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
            # (B, N, C) tokens -> (B, C, g, g) channels-last (a view); the upscaling stays channels-last
            up = self._upscale(src[keep].transpose(1, 2).reshape(-1, src.shape[-1], g, g), images, keep)
            hyper = self.hypernet(hs[keep, 1])
            pixels = up.permute(0, 2, 3, 1).reshape(up.shape[0], size * size, up.shape[1])  # a view if channels-last
            masks[keep] = (pixels @ hyper.unsqueeze(-1)).reshape(-1, 1, size, size).to(masks.dtype)
        return DecoderOutput(masks=masks, iou=iou, presence=presence)

    def _upscale(self, x: torch.Tensor, images: Optional[torch.Tensor], keep: torch.Tensor) -> torch.Tensor:
        """S/4 -> S/2 -> S, adding the image's detail features when the decoder has them and images are given."""
        up = self.upscaling
        if self.detail is None or images is None:
            return up(x)
        imgs = images[keep]
        half, full = self.detail(imgs.to(x.dtype))
        x = up[2](up[1](up[0](x))) + half
        return up[4](up[3](x) + full)
