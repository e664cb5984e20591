"""Small building blocks shared by the model parts."""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def gelu2d(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU of a (B, C, H, W) tensor; on a channels-last one through its contiguous (B, H, W, C) view.

    Elementwise: the values are those of ``F.gelu`` on a contiguous copy (PyTorch's vectorised CPU kernel; on the
    strided channels-last tensor it takes a path that is a third slower and differs in the last bit). The result
    keeps ``x``'s memory format.

    Example:
        >>> x = torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last)
        >>> torch.equal(gelu2d(x), F.gelu(x.contiguous()))
        True
    """
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return F.gelu(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return F.gelu(x)


class GELU2d(nn.GELU):
    """``nn.GELU`` for (B, C, H, W) maps, through :func:`gelu2d` (faster on channels-last tensors)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gelu2d(x)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) tensor.

    One fused ``layer_norm`` over a channels-last view (one copy at most) instead of eight elementwise passes: at
    the decoder's full resolution this was half of the decoding time on a CPU. The result is channels-last, which the
    convolutions that follow prefer.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class MLP(nn.Module):
    """Plain multi-layer perceptron with GELU (or ReLU) between layers."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2, relu: bool = False) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = nn.ReLU() if relu else nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x


class Attention(nn.Module):
    """Multi-head attention with an optional internal down-projection and a key padding mask.

    ``key_mask`` is a (B, Nk) bool tensor, True where the key is real; padded keys get no attention weight.
    """

    def __init__(self, dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.internal_dim = dim // downsample_rate
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide dim // downsample_rate")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, self.internal_dim)
        self.k_proj = nn.Linear(dim, self.internal_dim)
        self.v_proj = nn.Linear(dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_mask: Optional[torch.Tensor] = None,
        residual: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Attention of ``q`` over ``k``/``v``; plus ``residual`` (shaped like ``q``) when given. Many queries over
        few keys at inference add the attention into ``residual`` in place (one matmul, no pass of its own over the
        thousand image tokens) and return it: pass a residual that may be overwritten."""
        if not torch.is_grad_enabled():
            rank = self.num_heads * min(q.shape[1], k.shape[1])
            if rank < self.internal_dim and max(q.shape[1], k.shape[1]) >= 4 * self.internal_dim:
                if q.shape[1] > k.shape[1]:
                    return self._few_keys(q, k, v, key_mask, residual)
                out = self._few_queries(q, k, v, key_mask)
                return out if residual is None else residual + out
        q = self._split(self.q_proj(q))
        k = self._split(self.k_proj(k))
        v = self._split(self.v_proj(v))
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        b, h, n, c = out.shape
        out = self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))
        return out if residual is None else residual + out

    # The mask decoder attends between a few prompt tokens and a thousand image tokens. With h heads and n prompt
    # tokens, h * n < internal_dim: projecting the thousand image tokens is the expensive part, and it can be folded
    # into the few tokens' side (the same sums in another order; used without autograd, i.e. at inference).

    def _heads(self, weight: torch.Tensor) -> torch.Tensor:
        """(internal_dim, dim) projection weight -> (heads, head_dim, dim)."""
        return weight.reshape(self.num_heads, -1, weight.shape[-1])

    def _few_queries(self, q, k, v, key_mask):
        """Few queries over many keys: scores = (q W_q + b_q) W_k k^T (the key bias is constant along the
        softmax and cancels), out = ((A v) W_v^T + b_v) W_o^T + b_o (attention rows sum to one)."""
        b, nq, _ = q.shape
        qh = self._split(self.q_proj(q))  # (B, h, nq, c)
        qh = qh * qh.shape[-1] ** -0.5  # the scale on the few tokens' side, not on the (B, h, nq, Nk) scores
        folded = torch.einsum("bhqc,hcd->bhqd", qh, self._heads(self.k_proj.weight))  # (B, h, nq, dim)
        scores = (folded.reshape(b, -1, k.shape[-1]) @ k.transpose(1, 2)).reshape(b, self.num_heads, nq, -1)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        attn = scores.softmax(-1)
        mixed = (attn.reshape(b, -1, attn.shape[-1]) @ v).reshape(b, self.num_heads, nq, -1)  # (B, h, nq, dim)
        out = torch.einsum("bhqd,hcd->bqhc", mixed, self._heads(self.v_proj.weight)).reshape(b, nq, -1)
        return self.out_proj(out + self.v_proj.bias)

    def _few_keys(self, q, k, v, key_mask, residual=None):
        """Many queries over few keys: scores = q (W_q^T K^T) + b_q K^T, out = A (V W_o^T) + b_o; with a residual
        r: r += A (V W_o^T + b_o / h) in place (each head's attention sums to one: h over a row)."""
        b, nq, _ = q.shape
        kh = self._split(self.k_proj(k))  # (B, h, nk, c)
        vh = self._split(self.v_proj(v))
        h, nk = kh.shape[1], kh.shape[2]
        wq = self._heads(self.q_proj.weight)  # (h, c, dim)
        kh = kh * kh.shape[-1] ** -0.5  # the scale and the padding on the few keys' side (no pass over the scores)
        keys = torch.einsum("hcd,bhkc->bhkd", wq, kh).reshape(b, h * nk, -1)  # (B, h * nk, dim)
        bias = torch.einsum("hc,bhkc->bhk", self.q_proj.bias.reshape(h, -1), kh)
        if key_mask is not None:
            bias = bias.masked_fill(~key_mask[:, None, :], float("-inf"))
        # scores with the thousand queries along the last axis: the softmax over each head's few keys then runs
        # across rows (3x faster on a CPU than over a last axis of ten); the transpose back is free in the matmul
        scores = torch.baddbmm(bias.reshape(b, h * nk, 1), keys, q.transpose(1, 2))  # (B, h * nk, nq)
        attn = scores.reshape(b, h, nk, nq).softmax(2).reshape(b, h * nk, nq).transpose(1, 2)
        wo = self.out_proj.weight.reshape(-1, h, kh.shape[-1])  # (dim, h, c)
        values = torch.einsum("bhkc,dhc->bhkd", vh, wo).reshape(b, h * nk, -1)  # (B, h * nk, dim)
        if residual is None:
            return torch.baddbmm(self.out_proj.bias.expand(b, 1, -1), attn, values)
        return residual.baddbmm_(attn, values + self.out_proj.bias / h)
