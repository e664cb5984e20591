"""TinyViT-class image encoder: convolutional stem and MBConv stage, windowed-attention stages, FPN neck.

Input: (B, 3, S, S) slices with intensities in [0, 255]. Output: (B, D, S/4, S/4) image embeddings.
Fine detail comes from the stride-4 convolutional stage, context from the attention stages at strides 8 and 16;
an FPN-style neck merges them at stride 4 so that small structures (hippocampus, caudate) keep their outline.
"""

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layers import GELU2d, LayerNorm2d

PIXEL_MEAN = 0.5
PIXEL_STD = 0.25


class ConvBN(nn.Sequential):
    """Convolution then batch norm; in eval mode the norm is folded into the convolution (one pass, same result).

    Example:
        >>> block = ConvBN(4, 8, 3).eval()
        >>> x = torch.randn(2, 4, 16, 16)
        >>> torch.allclose(block(x), block[1](block[0](x)), atol=1e-5)
        True
    """

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn = self[0], self[1]
        if self.training or bn.running_var is None:
            return bn(conv(x))
        # y = (conv(x) - mean) * g / sqrt(var + eps) + b  ==  conv with weights scaled per output channel, plus a bias
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale.reshape(-1, 1, 1, 1)
        return F.conv2d(
            x, weight, bn.bias - bn.running_mean * scale, conv.stride, conv.padding, conv.dilation, conv.groups
        )


class MBConv(nn.Module):
    """Inverted residual block (expand, depth-wise 3x3, project)."""

    def __init__(self, dim: int, expand: int = 4) -> None:
        super().__init__()
        hidden = dim * expand
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)
        self.act = GELU2d()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv1(x))
        y = self.act(self.conv2(y))
        return self.act(x + self.conv3(y))


class WindowAttentionBlock(nn.Module):
    """TinyViT block: windowed self-attention, a depth-wise 3x3 convolution, an MLP; residual throughout."""

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window = window
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.local = ConvBN(dim, dim, 3, groups=dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        ws = self.window
        ph, pw = (-h) % ws, (-w) % ws
        if ph or pw:
            x = F.pad(x, (0, 0, 0, pw, 0, ph))
        hp, wp = h + ph, w + pw
        win = x.reshape(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
        qkv = self.qkv(win).reshape(win.shape[0], ws * ws, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        out = self.proj(out.transpose(1, 2).reshape(-1, ws * ws, c))
        out = out.reshape(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        return out[:, :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W)
        y = x.permute(0, 2, 3, 1)
        y = y + self._attend(self.norm1(y))
        x = y.permute(0, 3, 1, 2)
        x = x + self.local(x)
        y = x.permute(0, 2, 3, 1)
        y = y + self.mlp(self.norm2(y))
        return y.permute(0, 3, 1, 2)


class ImageEncoder(nn.Module):
    """TinyViT-class encoder producing (B, D, S/4, S/4) embeddings from (B, 3, S, S) slices in [0, 255].

    Example:
        >>> enc = ImageEncoder(ModelConfig(image_size=64, embed_dim=32))
        >>> enc(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 32, 16, 16])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d0, d1, d2, d3 = config.encoder_dims
        n0, n1, n2, n3 = config.encoder_depths
        _, h1, h2, h3 = config.encoder_heads
        ws, r = config.window_size, config.mlp_ratio
        self.stem = nn.Sequential(ConvBN(config.in_chans, d0 // 2, 3, 2), GELU2d(), ConvBN(d0 // 2, d0, 3, 2))
        self.stage0 = nn.Sequential(*[MBConv(d0) for _ in range(n0)])
        self.down1 = ConvBN(d0, d1, 3, 2)
        self.stage1 = nn.Sequential(*[WindowAttentionBlock(d1, h1, ws, r) for _ in range(n1)])
        self.down2 = ConvBN(d1, d2, 3, 2)
        self.stage2 = nn.Sequential(*[WindowAttentionBlock(d2, h2, ws, r) for _ in range(n2)])
        self.widen3 = ConvBN(d2, d3)
        self.stage3 = nn.Sequential(*[WindowAttentionBlock(d3, h3, ws, r) for _ in range(n3)])
        dim = config.embed_dim
        self.lateral = nn.ModuleList([nn.Conv2d(c, dim, 1) for c in (d0, d1, d3)])
        self.neck = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
            LayerNorm2d(dim),
            nn.Conv2d(dim, dim, 1, bias=False),
            LayerNorm2d(dim),
        )

    def features(self, images: torch.Tensor) -> List[torch.Tensor]:
        """Feature maps at strides 4, 8 and 16."""
        x = (images / 255.0 - PIXEL_MEAN) / PIXEL_STD
        f4 = self.stage0(self.stem(x))
        f8 = self.stage1(self.down1(f4))
        f16 = self.stage3(self.widen3(self.stage2(self.down2(f8))))
        return [f4, f8, f16]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        f4, f8, f16 = self.features(images)
        top = self.lateral[2](f16)
        top = F.interpolate(top, size=f8.shape[-2:], mode="bilinear", align_corners=False) + self.lateral[1](f8)
        top = F.interpolate(top, size=f4.shape[-2:], mode="bilinear", align_corners=False) + self.lateral[0](f4)
        return self.neck(top)
