"""Mask2Former's transformer decoder with three kinds of cross-attention.

``attention`` selects what a query may look at in layer l, given the mask it predicted after
layer l - 1 (``p = sigmoid(mask logits)`` resized to the layer's feature level):

* ``"cross"``: every pixel (plain DETR cross-attention).
* ``"masked"``: pixels with ``p >= 0.5`` (Mask2Former's masked attention).
* ``"global_masked"``: Mask2Anomaly's global masked attention (paper Eq. 8-9): a foreground
  attention over ``p >= 0.5`` plus a background attention over ``p <= 0.5``, outputs summed. With
  ``gma_weights="separate"`` the two attentions have their own weights (``cross_attn`` and
  ``cross_attn_bg``), as in the official code and checkpoints; with ``"shared"`` one set of
  weights serves both, as Eq. 8 writes it.

A query whose mask would block every pixel attends to all of them instead (Mask2Former's rule,
applied to each of the GMA masks separately), so no row of the softmax is empty.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from mask2anomaly.models.attention import MultiheadAttention
from mask2anomaly.models.output import MaskPrediction
from mask2anomaly.models.position_encoding import sine_position_encoding


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU in between (the mask embedding head)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def allowed_where(blocked: torch.Tensor) -> torch.Tensor:
    """Invert a blocked-pixel mask ``[B, 1, Q, S]``, unblocking rows that are blocked everywhere."""
    fully_blocked = blocked.all(dim=-1, keepdim=True)
    return ~blocked | fully_blocked


class DecoderLayer(nn.Module):
    """Cross-attention, then self-attention, then FFN; each with residual and LayerNorm."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, attention: str, gma_weights: str, pre_norm: bool) -> None:
        super().__init__()
        self.attention = attention
        self.pre_norm = pre_norm
        self.cross_attn = MultiheadAttention(dim, heads)
        self.cross_attn_bg = (
            MultiheadAttention(dim, heads) if attention == "global_masked" and gma_weights == "separate" else None
        )
        self.cross_norm = nn.LayerNorm(dim)
        self.self_attn = MultiheadAttention(dim, heads)
        self.self_norm = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        for linear in (self.linear1, self.linear2):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def _cross(
        self,
        x: torch.Tensor,
        query_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        masks: tuple[torch.Tensor | None, torch.Tensor | None],
    ) -> torch.Tensor:
        query, key = x + query_pos, memory + memory_pos
        fg_allowed, bg_allowed = masks
        q = self.cross_attn.project_q(query)
        k, v = self.cross_attn.project_kv(key, memory)
        out = self.cross_attn.attend(q, k, v, fg_allowed)
        if self.attention == "global_masked":
            if self.cross_attn_bg is None:
                out = out + self.cross_attn.attend(q, k, v, bg_allowed)
            else:
                out = out + self.cross_attn_bg(query, key, memory, bg_allowed)
        return out

    def forward(
        self,
        x: torch.Tensor,
        query_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        masks: tuple[torch.Tensor | None, torch.Tensor | None],
    ) -> torch.Tensor:
        if self.pre_norm:
            x = x + self._cross(self.cross_norm(x), query_pos, memory, memory_pos, masks)
            y = self.self_norm(x)
            x = x + self.self_attn(y + query_pos, y + query_pos, y)
            return x + self.linear2(F.relu(self.linear1(self.ffn_norm(x))))
        x = self.cross_norm(x + self._cross(x, query_pos, memory, memory_pos, masks))
        x = self.self_norm(x + self.self_attn(x + query_pos, x + query_pos, x))
        return self.ffn_norm(x + self.linear2(F.relu(self.linear1(x))))


class MaskedTransformerDecoder(nn.Module):
    """Learnable queries refined over ``num_layers`` layers, round-robin over three feature levels.

    Args:
        in_channels: width of the pixel decoder's multi-scale features.
        num_classes: K known classes (the class head predicts K + 1).
        hidden_dim, num_heads, dim_feedforward, num_layers, num_queries, mask_dim, pre_norm,
        enforce_input_projection, attention, gma_weights: see :class:`ModelConfig`.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden_dim: int = 256,
        num_heads: int = 8,
        dim_feedforward: int = 2048,
        num_layers: int = 9,
        num_queries: int = 100,
        mask_dim: int = 256,
        pre_norm: bool = False,
        enforce_input_projection: bool = False,
        attention: str = "masked",
        gma_weights: str = "separate",
    ) -> None:
        super().__init__()
        self.num_levels = 3
        self.attention = attention
        self.layers = nn.ModuleList(
            DecoderLayer(hidden_dim, num_heads, dim_feedforward, attention, gma_weights, pre_norm)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(self.num_levels, hidden_dim)
        project = in_channels != hidden_dim or enforce_input_projection
        self.input_proj = nn.ModuleList(
            nn.Conv2d(in_channels, hidden_dim, 1) if project else nn.Identity() for _ in range(self.num_levels)
        )
        for proj in self.input_proj:
            if isinstance(proj, nn.Conv2d):
                nn.init.kaiming_uniform_(proj.weight, a=1)
                nn.init.zeros_(proj.bias)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    def _attention_masks(self, small: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Allowed-pixel masks ``[B, 1, Q, h*w]`` from mask logits ``small [B, Q, h, w]`` at a layer's level."""
        if self.attention == "cross":
            return (None, None)
        prob = small.detach().sigmoid().flatten(2).unsqueeze(1)
        fg = allowed_where(prob < 0.5)
        bg = allowed_where(prob > 0.5) if self.attention == "global_masked" else None
        return (fg, bg)

    def _predict(
        self, x: torch.Tensor, mask_features: torch.Tensor, target_size: tuple[int, int]
    ) -> tuple[MaskPrediction, tuple[torch.Tensor | None, torch.Tensor | None]]:
        """Heads on ``x [B, Q, C]``, and the attention masks for the next layer at ``target_size``."""
        x = self.norm(x)
        class_logits = self.class_embed(x)
        mask_logits = torch.einsum("bqc,bchw->bqhw", self.mask_embed(x), mask_features)
        small = None
        if self.attention != "cross":
            small = F.interpolate(mask_logits.detach(), size=target_size, mode="bilinear", align_corners=False)
        return MaskPrediction(class_logits, mask_logits), self._attention_masks(small)

    def _attention_only(
        self, x: torch.Tensor, level_features: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The next layer's attention masks without the full-resolution mask logits (inference
        without intermediate outputs): the mask embeddings read mask features already reduced to the
        level's size as the bilinear resize would, so only ``h x w`` logits are computed."""
        if self.attention == "cross":
            return (None, None)
        embed = self.mask_embed(self.norm(x))
        return self._attention_masks(torch.einsum("bqc,bchw->bqhw", embed, level_features))

    def forward(
        self, multi_scale_features: list[torch.Tensor], mask_features: torch.Tensor, intermediate: bool = True
    ) -> list[MaskPrediction]:
        """``multi_scale_features``: three maps (strides 32, 16, 8); ``mask_features [B, D, H/4, W/4]``.

        Returns ``num_layers + 1`` predictions, the last being the model's output; with
        ``intermediate=False`` only that last one (the attention masks are then computed at each
        level's resolution directly, which is the same bilinear resize of the same linear map).
        """
        memories, positions, sizes = [], [], []
        for i, feature in enumerate(multi_scale_features):
            height, width = feature.shape[-2:]
            sizes.append((height, width))
            memories.append(
                (self.input_proj[i](feature).flatten(2) + self.level_embed.weight[i][None, :, None]).transpose(1, 2)
            )
            pos = sine_position_encoding(height, width, memories[-1].shape[-1], feature.device, feature.dtype)
            positions.append(pos.flatten(1).transpose(0, 1)[None])
        reduced = None if intermediate else [downsample_like_bilinear(mask_features, size) for size in sizes]

        batch = mask_features.shape[0]
        query_pos = self.query_embed.weight[None]
        x = self.query_feat.weight[None].expand(batch, -1, -1)
        predictions: list[MaskPrediction] = []
        if reduced is None:
            prediction, masks = self._predict(x, mask_features, sizes[0])
            predictions.append(prediction)
        else:
            masks = self._attention_only(x, reduced[0])
        for i, layer in enumerate(self.layers):
            level = i % self.num_levels
            x = layer(x, query_pos, memories[level], positions[level], masks)
            target = (i + 1) % self.num_levels
            if reduced is None or i == len(self.layers) - 1:
                prediction, masks = self._predict(x, mask_features, sizes[target])
                predictions.append(prediction)
            else:
                masks = self._attention_only(x, reduced[target])
        return predictions


def downsample_like_bilinear(features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(features, size, mode="bilinear", align_corners=False)``, computed directly.

    For an integer factor f >= 2 each output pixel is the mean of the 2 x 2 input pixels around
    ``f * i + (f - 1) / 2``; being linear, reducing the mask features first and applying the mask
    embeddings after equals reducing the mask logits. Other sizes use ``F.interpolate``.
    """
    height, width = features.shape[-2:]
    fy, fx = height // size[0], width // size[1]
    if (fy, fx) == (1, 1) and (height, width) == tuple(size):
        return features
    if fy != fx or fy < 2 or fy % 2 or (height, width) != (fy * size[0], fx * size[1]):
        return F.interpolate(features, size=size, mode="bilinear", align_corners=False)
    first = fy // 2 - 1
    rows = features[..., first::fy, :] + features[..., first + 1 :: fy, :]
    return 0.25 * (rows[..., first::fx] + rows[..., first + 1 :: fx])
