"""Multi-head attention with ``nn.MultiheadAttention``'s parameters, on batch-first tensors, computed
with ``scaled_dot_product_attention`` (fused kernels on CPU and GPU)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiheadAttention(nn.Module):
    """Attention whose state dict matches ``nn.MultiheadAttention`` (``in_proj_weight``,
    ``in_proj_bias``, ``out_proj``), so Mask2Former checkpoints load unchanged.

    Unlike ``nn.MultiheadAttention`` the boolean mask means *allowed* (True = may attend), it is
    shared by the heads (``[B, 1, Q, S]``), and keys and values can be projected once and reused
    (:meth:`project_kv`) — global masked attention with shared weights attends twice to the same
    keys.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.dim, self.heads = dim, heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, self.dim // self.heads).transpose(1, 2)

    def project_q(self, query: torch.Tensor) -> torch.Tensor:
        """``[B, Q, C] -> [B, heads, Q, C/heads]``."""
        w, b = self.in_proj_weight[: self.dim], self.in_proj_bias[: self.dim]
        return self._split(F.linear(query, w, b))

    def project_kv(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, S, C]`` each -> two ``[B, heads, S, C/heads]``."""
        d = self.dim
        k = F.linear(key, self.in_proj_weight[d : 2 * d], self.in_proj_bias[d : 2 * d])
        v = F.linear(value, self.in_proj_weight[2 * d :], self.in_proj_bias[2 * d :])
        return self._split(k), self._split(v)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        """Projected ``q``/``k``/``v`` -> output ``[B, Q, C]`` (after ``out_proj``)."""
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        batch, _, length, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, self.dim))

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, allowed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``query [B, Q, C]``, ``key``/``value [B, S, C]``, ``allowed [B, 1, Q, S]`` -> ``[B, Q, C]``."""
        k, v = self.project_kv(key, value)
        return self.attend(self.project_q(query), k, v, allowed)
