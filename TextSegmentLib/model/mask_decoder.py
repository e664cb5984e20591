"""Mask decoder: two-way transformer over prompt tokens and the image, upscaling to input-resolution mask logits,
an IoU head and a presence head (is the target on this slice at all).

With ``detail_channels`` > 0 the two upscaling steps (S/4 -> S/2 -> S) each add features computed from the input
image at that resolution (:class:`DetailPath`), so mask edges can follow the image finer than the embedding grid.
The skips' output projections start at zero: a decoder trained without them keeps its behaviour when they are added.
"""

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .image_encoder import PIXEL_MEAN, PIXEL_STD
from .layers import MLP, GELU2d, LayerNorm2d, gelu2d
from .transformer import TwoWayTransformer

NUM_OUTPUT_TOKENS = 3  # IoU, mask, presence
ABSENT_LOGIT = -20.0
Crop = Tuple[int, int, int, int]  # rows y0:y1, columns x0:x1 of the (S, S) mask
Keep = Union[torch.Tensor, slice]  # the batch rows whose target is present: indices, or every row
DETAIL_HALO = 8  # image pixels beyond a crop that the detail path's convolutions read (3 are needed)


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
            GELU2d(),
            nn.Conv2d(channels, channels, 3, 1, 1),
        )
        self.to_full = nn.Sequential(nn.Conv2d(in_chans, channels, 3, 1, 1), LayerNorm2d(channels), GELU2d())
        self.half_proj = nn.Conv2d(channels, half_out, 1)
        self.full_proj = nn.Conv2d(channels, full_out, 1)
        for proj in (self.half_proj, self.full_proj):
            nn.init.zeros_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(self, images: torch.Tensor):
        x = ((images / 255.0 - PIXEL_MEAN) / PIXEL_STD).contiguous(memory_format=torch.channels_last)
        return self.half_proj(gelu2d(self.to_half(x))), self.full_proj(self.to_full(x))


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
            GELU2d(),
            nn.ConvTranspose2d(dim // 4, dim // 8, 2, 2),
            GELU2d(),
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
        crop: Optional[Crop] = None,
        probe: bool = False,
    ) -> DecoderOutput:
        b = image.shape[0]
        out_tokens = self.output_tokens.weight.unsqueeze(0).expand(b, -1, -1)
        tokens = torch.cat([out_tokens, sparse], dim=1)
        always = torch.ones(b, NUM_OUTPUT_TOKENS, dtype=torch.bool, device=image.device)
        mask = torch.cat([always, sparse_valid], dim=1)
        hs, src = self.transformer(image, image_pe, sentence, tokens, mask, dense=dense)
        iou = self.iou_head(hs[:, 0])
        presence = self.presence_head(hs[:, 2])
        g = image.shape[-1]
        size = g * 4
        keep = torch.arange(b, device=image.device)
        if presence_threshold is not None:
            keep = torch.nonzero(presence[:, 0] >= presence_threshold).flatten()
        found = keep.numel()
        if found == b:
            keep = slice(None)  # type: ignore[assignment]  # every slice: views, not gathered copies
        masks = torch.full((b, 1, size, size), ABSENT_LOGIT, dtype=hs.dtype, device=image.device)
        if found and probe:
            samples = self._probe(src[keep].transpose(1, 2).reshape(-1, src.shape[-1], g, g), images, keep)
            logits = (samples.flatten(2).transpose(1, 2) @ self.hypernet(hs[keep, 1]).unsqueeze(-1)).reshape(-1, g, g)
            masks[keep] = logits.repeat_interleave(4, -2).repeat_interleave(4, -1)[:, None].to(masks.dtype)
        elif found:
            y0, y1, x0, x1 = align_crop(crop, size)
            # (B, N, C) tokens -> (B, C, g, g) channels-last (a view); the upscaling stays channels-last
            x = src[keep].transpose(1, 2).reshape(-1, src.shape[-1], g, g)[:, :, y0 // 4 : y1 // 4, x0 // 4 : x1 // 4]
            up = self._upscale(x, images, keep, (y0, y1, x0, x1))
            hyper = self.hypernet(hs[keep, 1])
            h, w = up.shape[-2:]
            pixels = up.permute(0, 2, 3, 1).reshape(up.shape[0], h * w, up.shape[1])  # a view if channels-last
            part = (pixels @ hyper.unsqueeze(-1)).reshape(-1, 1, h, w).to(masks.dtype)
            if (h, w) == (size, size):
                masks[keep] = part
            else:
                masks[keep, :, y0:y1, x0:x1] = part
        return DecoderOutput(masks=masks, iou=iou, presence=presence)

    def _upscale(self, x: torch.Tensor, images: Optional[torch.Tensor], keep: Keep, crop: Crop) -> torch.Tensor:
        """S/4 -> S/2 -> S, adding the image's detail features when the decoder has them and images are given.
        ``x`` holds the tokens of the aligned ``crop`` only: every step is per pixel except the detail path's 3 x 3
        convolutions, which see the image ``DETAIL_HALO`` pixels beyond the crop (exact inside it)."""
        up = self.upscaling
        if self.detail is None or images is None:
            return up(x)
        y0, y1, x0, x1 = crop
        size = images.shape[-1]
        iy0, ix0 = max(0, y0 - DETAIL_HALO), max(0, x0 - DETAIL_HALO)
        iy1, ix1 = min(size, y1 + DETAIL_HALO), min(size, x1 + DETAIL_HALO)
        half, full = self.detail(images[keep, :, iy0:iy1, ix0:ix1].to(x.dtype))
        if (iy0, iy1, ix0, ix1) != (y0, y1, x0, x1):
            ty, tx = y0 - iy0, x0 - ix0
            full = full[:, :, ty : ty + y1 - y0, tx : tx + x1 - x0]
            half = half[:, :, ty // 2 : (ty + y1 - y0) // 2, tx // 2 : (tx + x1 - x0) // 2]
        x = up[2](up[1](up[0](x))) + half
        return up[4](up[3](x) + full)

    def _probe(self, x: torch.Tensor, images: Optional[torch.Tensor], keep: Keep) -> torch.Tensor:
        """The upscaled features at the pixels (4i + 2, 4j + 2) only, i.e. one pixel of each 4 x 4 block (a 16th of
        the upscaling): the 2 x 2 transposed convolutions become 1 x 1 convolutions with one kernel tap, and the
        detail path's 3 x 3 convolutions are evaluated at those pixels only. Exactly the whole mask's values there."""
        up = self.upscaling
        w1, w2 = up[0].weight[:, :, 1, 1], up[3].weight[:, :, 0, 0]  # half pixel 2i + 1, then full 2(2i + 1) + 0
        h = F.conv2d(x, w1.t()[:, :, None, None], up[0].bias)
        h = up[2](up[1](h))
        full = None
        if self.detail is not None and images is not None:
            d = self.detail
            img = ((images[keep].to(x.dtype) / 255.0 - PIXEL_MEAN) / PIXEL_STD).contiguous(
                memory_format=torch.channels_last
            )
            h1 = d.to_half[2](d.to_half[1](d.to_half[0](img)))  # every half-resolution pixel (3 x 3 needs them)
            conv = d.to_half[3]
            h2 = F.conv2d(F.pad(h1, (1, 1, 1, 1))[:, :, 1:, 1:], conv.weight, conv.bias, stride=2)  # at 2i + 1
            h = h + d.half_proj(gelu2d(h2))
            conv = d.to_full[0]
            f = F.conv2d(F.pad(img, (1, 1, 1, 1))[:, :, 2:, 2:], conv.weight, conv.bias, stride=4)  # at 4i + 2
            full = d.full_proj(d.to_full[2](d.to_full[1](f)))
        h = F.conv2d(h, w2.t()[:, :, None, None], up[3].bias)
        return up[4](h if full is None else h + full)


def align_crop(crop: Optional[Crop], size: int) -> Crop:
    """``crop`` widened to multiples of 8 pixels (whole tokens and even detail-path strides), inside the mask;
    None is the whole mask. Decoding a crop gives the same logits there as decoding the whole mask.

    Example:
        >>> align_crop((10, 30, 0, 5), 128), align_crop(None, 128)
        ((8, 32, 0, 8), (0, 128, 0, 128))
    """
    if crop is None:
        return 0, size, 0, size
    out = []
    for a, b in ((crop[0], crop[1]), (crop[2], crop[3])):
        lo = min(max(0, int(a) // 8 * 8), size - 8)
        out += [lo, max(min(size, -(-int(b) // 8) * 8), lo + 8)]
    return out[0], out[1], out[2], out[3]
