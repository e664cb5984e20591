"""Two-way transformer of the mask decoder (SAM), with prompt padding masks and the sentence embedding added to the
image keys (LangMedSAM, seed 000, equations 6-8)."""

from typing import Optional, Tuple

import torch
from torch import nn

from .layers import MLP, Attention


class TwoWayBlock(nn.Module):
    """Masked self-attention over prompt tokens, token->image and image->token cross-attention, MLP."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, downsample: int, skip_first_pe: bool) -> None:
        super().__init__()
        self.self_attn = Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.token_to_image = Attention(dim, heads, downsample)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim, dim, relu=True)
        self.norm3 = nn.LayerNorm(dim)
        self.image_to_token = Attention(dim, heads, downsample)
        self.norm4 = nn.LayerNorm(dim)
        self.skip_first_pe = skip_first_pe

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        token_mask: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_pe:
            queries = self.self_attn(queries, queries, queries, token_mask)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries, token_mask)
        queries = self.norm1(queries)
        q = queries + query_pe
        k = keys + key_pe
        queries = self.norm2(queries + self.token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q = queries + query_pe
        keys = self.norm4(self.image_to_token(k, q, queries, token_mask, residual=keys))  # keys: updated in place
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Stack of :class:`TwoWayBlock` plus a final token->image attention.

    ``key_pe`` is the image positional encoding plus the projected sentence embedding, so that the sentence
    conditions every attention to the image (K = I_emb + S_emb).
    """

    def __init__(self, depth: int, dim: int, heads: int, mlp_dim: int, downsample: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TwoWayBlock(dim, heads, mlp_dim, downsample, i == 0) for i in range(depth))
        self.final_attn = Attention(dim, heads, downsample)
        self.norm_final = nn.LayerNorm(dim)

    def forward(
        self,
        image: torch.Tensor,
        image_pe: torch.Tensor,
        sentence: torch.Tensor,
        tokens: torch.Tensor,
        token_mask: Optional[torch.Tensor],
        dense: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """image (B, D, H, W), image_pe (1 or B, D, H, W), sentence (B, D), tokens (B, T, D), mask (B, T), dense
        prompt embedding (B, D, H, W; broadcast allowed) added to the image."""
        if torch.is_grad_enabled():
            keys = (image if dense is None else image + dense).flatten(2).transpose(1, 2).contiguous()
        else:
            # (B, N, D) rows (the projections become one matmul) in a tensor of its own: the image-side residuals
            # are added into it in place at inference; image + dense is written straight into that layout
            b, d = image.shape[:2]
            keys = torch.empty((b, image[0, 0].numel(), d), dtype=image.dtype, device=image.device)
            dense = torch.zeros((), dtype=image.dtype, device=image.device) if dense is None else dense
            torch.add(image.flatten(2).transpose(1, 2), dense.expand_as(image).flatten(2).transpose(1, 2), out=keys)
        if sentence.shape[0] > 1 and sentence.stride(0) == 0:  # one text for the batch: one (1, N, D) encoding
            sentence = sentence[:1]
        # (1 or B, N, D) in row order: added to the keys in every block, a transposed layout made each add 15x slower
        key_pe = (image_pe.flatten(2).transpose(1, 2) + sentence[:, None, :]).contiguous()
        if key_pe.shape[0] != keys.shape[0]:  # and one per batch item: broadcasting it over the batch is 5x slower
            key_pe = key_pe.expand(keys.shape[0], -1, -1).contiguous()
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe, token_mask)
        attn = self.final_attn(queries + tokens, keys + key_pe, keys)
        return self.norm_final(queries + attn), keys
