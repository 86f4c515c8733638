"""Swin Transformer backbones (Liu et al., ICCV 2021): shifted-window self-attention in four stages.

Parameter names are those of the Swin weights inside Hugging Face Mask2Former checkpoints
(``embeddings.patch_embeddings.projection``, ``encoder.layers.{i}.blocks.{j}.attention.self.query``,
``hidden_states_norms.stage{k}`` ...), so the released Swin-T/S/B/L models load as they are, with no
dependency on ``transformers``. As in HF's backbone, windows are always partitioned (shifted every
second block) whatever the resolution, and each stage's output is layer-normalised (returned as a
channels-last view, which the pixel decoder's convolutions prefer).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from mask2anomaly.models.backbones.base import Backbone, FeatureSpec
from mask2anomaly.models.config import SwinConfig


def _windows(x: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, H, W, C] -> [B * H/size * W/size, size * size, C]``."""
    b, h, w, c = x.shape
    x = x.view(b, h // size, size, w // size, size, c).transpose(2, 3)
    return x.reshape(-1, size * size, c)


def _unwindows(x: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`_windows`."""
    c = x.shape[-1]
    x = x.view(-1, h // size, w // size, size, size, c).transpose(2, 3)
    return x.reshape(-1, h, w, c)


@lru_cache(maxsize=32)
def shifted_window_mask(
    h: int, w: int, window: int, shift: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Additive mask ``[nW, window^2, window^2]``: -100 between pixels that the cyclic shift brought
    together from different image regions, 0 elsewhere. Depends only on the sizes, so it is cached."""
    rows = (torch.arange(h, device=device) >= h - window).long() + (torch.arange(h, device=device) >= h - shift).long()
    cols = (torch.arange(w, device=device) >= w - window).long() + (torch.arange(w, device=device) >= w - shift).long()
    region = (rows[:, None] * 3 + cols[None, :]).to(dtype)[None, :, :, None]
    region = _windows(region, window).squeeze(-1)
    differs = region[:, None, :] != region[:, :, None]
    return torch.zeros(differs.shape, device=device, dtype=dtype).masked_fill(differs, -100.0)


class SelfAttentionWeights(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, qkv_bias: bool) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim, bias=qkv_bias)
        self.key = nn.Linear(dim, dim, bias=qkv_bias)
        self.value = nn.Linear(dim, dim, bias=qkv_bias)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1], persistent=False)


class OutputProjection(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)


class WindowAttention(nn.Module):
    """Multi-head attention inside windows, with a learned relative position bias."""

    def __init__(self, dim: int, heads: int, window: int, qkv_bias: bool) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.self = SelfAttentionWeights(dim, heads, window, qkv_bias)
        self.output = OutputProjection(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x [B * nW, N, C]``, ``mask [nW, N, N]`` additive or ``None``."""
        bw, n, c = x.shape
        attn = self.self
        weight = torch.cat((attn.query.weight, attn.key.weight, attn.value.weight))
        bias = None if attn.query.bias is None else torch.cat((attn.query.bias, attn.key.bias, attn.value.bias))
        qkv = F.linear(x, weight, bias).view(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = self.self.relative_position_bias_table[self.self.relative_position_index.flatten()]
        bias = bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            num_windows = mask.shape[0]
            bias = (bias.unsqueeze(1) + mask[None, :, None]).expand(bw // num_windows, -1, -1, -1, -1)
            bias = bias.reshape(bw, self.heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.output.dense(out.transpose(1, 2).reshape(bw, n, c))


class Dense(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, out_dim)


class SwinBlock(nn.Module):
    """(Shifted-)window attention and a GELU MLP, each pre-normalised with a residual."""

    def __init__(self, dim: int, heads: int, config: SwinConfig, shift: int, drop_path: float) -> None:
        super().__init__()
        self.window, self.shift, self.drop_path = config.window_size, shift, drop_path
        self.layernorm_before = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attention = WindowAttention(dim, heads, config.window_size, config.qkv_bias)
        self.layernorm_after = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        hidden = int(config.mlp_ratio * dim)
        self.intermediate = Dense(dim, hidden)
        self.output = Dense(hidden, dim)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_path == 0.0:
            return x
        keep = 1.0 - self.drop_path
        return x * x.new_empty(x.shape[0], 1, 1).bernoulli_(keep) / keep

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        ws = self.window
        y = self.layernorm_before(x).view(b, h, w, c)
        pad_h, pad_w = (ws - h % ws) % ws, (ws - w % ws) % ws
        if pad_h or pad_w:
            y = F.pad(y, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        mask = None
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
            mask = shifted_window_mask(hp, wp, ws, self.shift, x.device, x.dtype)
        y = self.attention(_windows(y, ws), mask)
        y = _unwindows(y, ws, hp, wp)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self._residual(y[:, :h, :w].reshape(b, h * w, c))
        return x + self._residual(self.output.dense(F.gelu(self.intermediate.dense(self.layernorm_after(x)))))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concatenation, LayerNorm, linear reduction to twice the width."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(
        self, dim: int, depth: int, heads: int, config: SwinConfig, drop_paths: list[float], merge: bool
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, config, 0 if i % 2 == 0 else config.window_size // 2, drop_paths[i])
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if merge else None


class PatchEmbeddings(nn.Module):
    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.patch = config.patch_size
        self.projection = nn.Conv2d(3, config.embed_dim, config.patch_size, stride=config.patch_size)


class Embeddings(nn.Module):
    """Patch embedding, its layer norm, and the optional absolute position embeddings (one per
    patch of ``config.image_size``; bicubically resized to another patch grid, as HF does when asked
    to interpolate)."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.patch_embeddings = PatchEmbeddings(config)
        self.norm = nn.LayerNorm(config.embed_dim)
        self.grid = tuple(side // config.patch_size for side in config.image_size)
        self.position_embeddings = (
            nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], config.embed_dim))
            if config.use_absolute_embeddings
            else None
        )

    def positions(self, h: int, w: int) -> torch.Tensor:
        """``[1, h * w, C]`` position embeddings of an ``h x w`` patch grid."""
        assert self.position_embeddings is not None
        if (h, w) == self.grid:
            return self.position_embeddings
        grid = self.position_embeddings.reshape(1, *self.grid, -1).permute(0, 3, 1, 2)
        resized = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        return resized.permute(0, 2, 3, 1).reshape(1, h * w, -1)


class Encoder(nn.Module):
    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        total = sum(config.depths)
        rates = [config.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        stages, start = [], 0
        for i, (depth, heads) in enumerate(zip(config.depths, config.num_heads, strict=True)):
            merge = i < len(config.depths) - 1
            stages.append(SwinStage(config.embed_dim * 2**i, depth, heads, config, rates[start : start + depth], merge))
            start += depth
        self.layers = nn.ModuleList(stages)


class Swin(Backbone):
    """Swin trunk returning the layer-normalised outputs of its four stages (strides 4 to 32)."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        dims = [config.embed_dim * 2**i for i in range(len(config.depths))]
        self.hidden_states_norms = nn.ModuleDict({f"stage{i + 1}": nn.LayerNorm(d) for i, d in enumerate(dims)})
        self.feature_specs = tuple(FeatureSpec(d, config.patch_size * 2**i) for i, d in enumerate(dims))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        patch = self.embeddings.patch_embeddings.patch
        x = F.pad(x, (0, (-x.shape[-1]) % patch, 0, (-x.shape[-2]) % patch))
        x = self.embeddings.patch_embeddings.projection(x)
        b, _, h, w = x.shape
        x = self.embeddings.norm(x.flatten(2).transpose(1, 2))
        if self.embeddings.position_embeddings is not None:
            x = x + self.embeddings.positions(h, w)
        features = []
        for i, stage in enumerate(self.encoder.layers):
            for block in stage.blocks:
                x = block(x, h, w)
            out = self.hidden_states_norms[f"stage{i + 1}"](x)
            features.append(out.view(b, h, w, -1).permute(0, 3, 1, 2))
            if stage.downsample is not None:
                x = stage.downsample(x, h, w)
                h, w = (h + 1) // 2, (w + 1) // 2
        return features
