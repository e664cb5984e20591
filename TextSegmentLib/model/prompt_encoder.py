"""SAM-style prompt encoder: random-Fourier positional encoding, sparse box/point tokens, dense mask embedding.

Coordinates are (x, y) in input pixels of the S x S model input (S = ``image_size``), x along columns.
"""

from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .layers import LayerNorm2d

POINT_NEGATIVE = 0
POINT_POSITIVE = 1
POINT_PADDING = -1


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random spatial frequencies (Tancik et al.), as in SAM."""

    def __init__(self, num_pos_feats: int, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        # coords in [0, 1], shape (..., 2)
        coords = (2 * coords - 1) @ self.gaussian_matrix.to(coords.dtype)
        coords = 2 * np.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def grid(self, size: int) -> torch.Tensor:
        """Dense (C, size, size) encoding of a grid of pixel centres."""
        device = self.gaussian_matrix.device
        centres = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
        yy, xx = torch.meshgrid(centres, centres, indexing="ij")
        return self._encode(torch.stack([xx, yy], dim=-1)).permute(2, 0, 1)

    def points(self, coords: torch.Tensor, image_size: int) -> torch.Tensor:
        """Encode (..., 2) pixel coordinates of an ``image_size`` square input."""
        return self._encode(coords.float() / image_size)


class PromptEncoder(nn.Module):
    """Embeds boxes, +/- points and previous masks.

    Example:
        >>> enc = PromptEncoder(embed_dim=32, image_size=64)
        >>> tokens, valid, dense = enc(batch=2, boxes=torch.tensor([[4., 4., 30., 30.]]))
        >>> tokens.shape, valid.tolist(), dense.shape
        (torch.Size([2, 2, 32]), [[True, True], [True, True]], torch.Size([2, 32, 16, 16]))
    """

    def __init__(self, embed_dim: int, image_size: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_size = image_size
        self.embedding_size = image_size // 4
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self._dense_pe: Dict[tuple, torch.Tensor] = {}  # see dense_pe
        # 0: negative point, 1: positive point, 2: box top-left, 3: box bottom-right
        self.point_embeddings = nn.Embedding(4, embed_dim)
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        c = embed_dim
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, c // 16, 2, 2),
            LayerNorm2d(c // 16),
            nn.GELU(),
            nn.Conv2d(c // 16, c // 4, 2, 2),
            LayerNorm2d(c // 4),
            nn.GELU(),
            nn.Conv2d(c // 4, c, 1),
        )

    def dense_pe(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(1, D, G, G) positional encoding of the image embedding grid in ``dtype``; computed once per dtype and
        kept until the frequencies change (``load_state_dict``, ``.to()``): every decode call needs it.

        Example:
            >>> enc = PromptEncoder(embed_dim=32, image_size=64)
            >>> enc.dense_pe().shape, enc.dense_pe() is enc.dense_pe()
            (torch.Size([1, 32, 16, 16]), True)
        """
        freq = self.pe_layer.gaussian_matrix
        key = (freq.data_ptr(), freq._version, freq.device, dtype)
        cached = self._dense_pe.get(key)
        if cached is None:
            cached = self.pe_layer.grid(self.embedding_size).unsqueeze(0).to(dtype)
            self._dense_pe = {k: v for k, v in self._dense_pe.items() if k[:3] == key[:3]}  # drop stale ones
            self._dense_pe[key] = cached
        return cached

    def embed_points(self, points: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, N, 2) pixel coordinates and (B, N) labels (1 +, 0 -, -1 padding) -> tokens and validity."""
        emb = self.pe_layer.points(points + 0.5, self.image_size)
        labels = labels.long()
        emb = emb + self.point_embeddings(labels.clamp(min=0))
        valid = labels >= 0
        return emb * valid[..., None], valid

    def embed_boxes(self, boxes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, 4) boxes x0, y0, x1, y1 in pixels -> two corner tokens each; a row with a negative value is no box."""
        corners = boxes.reshape(-1, 2, 2) + 0.5
        emb = self.pe_layer.points(corners, self.image_size)
        emb = emb + self.point_embeddings.weight[2:4].unsqueeze(0)
        valid = (boxes >= 0).all(dim=1, keepdim=True).expand(-1, 2)
        return emb * valid[..., None], valid

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) mask logits at input resolution -> (B, D, S/4, S/4)."""
        return self.mask_downscaling(masks)

    def forward(
        self,
        batch: int,
        boxes: Optional[torch.Tensor] = None,
        points: Optional[torch.Tensor] = None,
        point_labels: Optional[torch.Tensor] = None,
        mask_inputs: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return sparse tokens (B, N, D), their validity (B, N) and the dense embedding (B, D, G, G)."""
        device = self.point_embeddings.weight.device
        tokens = [torch.zeros(batch, 0, self.embed_dim, device=device)]
        valid = [torch.zeros(batch, 0, dtype=torch.bool, device=device)]
        if points is not None:
            if point_labels is None:
                raise ValueError("points need point_labels (1 positive, 0 negative, -1 padding)")
            emb, ok = self.embed_points(points.to(device).float(), point_labels.to(device))
            tokens.append(emb.expand(batch, -1, -1))
            valid.append(ok.expand(batch, -1))
        if boxes is not None:
            emb, ok = self.embed_boxes(boxes.to(device).float().reshape(-1, 4))
            tokens.append(emb.expand(batch, -1, -1))
            valid.append(ok.expand(batch, -1))
        g = self.embedding_size
        if mask_inputs is not None:
            dense = self.embed_masks(mask_inputs.to(device).float()).expand(batch, -1, -1, -1)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, g, g)
        return torch.cat(tokens, dim=1), torch.cat(valid, dim=1), dense
