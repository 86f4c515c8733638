"""Slow, obviously correct references for the method tests (explicit loops over pixels and queries),
and builders of model outputs with chosen probabilities."""

from __future__ import annotations

import math

import torch

from mask2anomaly.models import MaskTransformerOutput

ON, OFF = 12.0, -12.0
"""Mask logits whose sigmoid is 1 - 6e-6 / 6e-6: a query's mask on / off at a pixel."""


def random_output(batch: int, queries: int, classes: int, h: int, w: int, seed: int = 0) -> MaskTransformerOutput:
    g = torch.Generator().manual_seed(seed)
    return MaskTransformerOutput(
        torch.randn(batch, queries, classes + 1, generator=g, dtype=torch.float64) * 2,
        torch.randn(batch, queries, h, w, generator=g, dtype=torch.float64) * 3,
    )


def class_logits(rows: list[tuple[int, float]], num_classes: int) -> torch.Tensor:
    """``[Q, K + 1]`` logits whose softmax gives class ``c`` probability ``p`` and spreads ``1 - p``
    evenly over the other K classes; ``c = num_classes`` is "no object"."""
    out = torch.empty(len(rows), num_classes + 1, dtype=torch.float64)
    for q, (c, p) in enumerate(rows):
        out[q] = math.log((1 - p) / num_classes)
        out[q, c] = math.log(p)
    return out


def marginal(output: MaskTransformerOutput) -> torch.Tensor:
    """``[B, K, H, W]`` sum over queries of class probability times mask probability, pixel by pixel."""
    b_, q_, k1 = output.class_logits.shape
    h_, w_ = output.mask_logits.shape[-2:]
    out = torch.zeros(b_, k1 - 1, h_, w_, dtype=torch.float64)
    for b in range(b_):
        for q in range(q_):
            p = [math.exp(v) for v in output.class_logits[b, q].tolist()]
            total = sum(p)
            for k in range(k1 - 1):
                for i in range(h_):
                    for j in range(w_):
                        m = 1 / (1 + math.exp(-float(output.mask_logits[b, q, i, j])))
                        out[b, k, i, j] += p[k] / total * m
    return out


def per_pixel(scores: torch.Tensor, fn) -> torch.Tensor:
    """Apply ``fn(list of K floats) -> float`` to every pixel of ``[B, K, H, W]``."""
    b_, _, h_, w_ = scores.shape
    out = torch.zeros(b_, h_, w_, dtype=torch.float64)
    for b in range(b_):
        for i in range(h_):
            for j in range(w_):
                out[b, i, j] = fn(scores[b, :, i, j].tolist())
    return out


def msp(f: list[float], normalise: bool) -> float:
    p = [v / sum(f) for v in f] if normalise else [math.exp(v) / sum(math.exp(u) for u in f) for v in f]
    return 1 - max(p)


def entropy(f: list[float], normalise: bool) -> float:
    p = [v / sum(f) for v in f] if normalise else [math.exp(v) / sum(math.exp(u) for u in f) for v in f]
    return -sum(v * math.log(v) for v in p if v > 0)


def energy(f: list[float], t: float) -> float:
    return -t * math.log(sum(math.exp(v / t) for v in f))


def maskomaly(
    output: MaskTransformerOutput,
    variant: str,
    t_mask: float,
    t_border: float,
    eps_border: float,
    lam: float,
    rejected: tuple[int, ...],
    anomaly: tuple[int, ...],
) -> torch.Tensor:
    """Maskomaly as the authors' loops: per query, then per pair of queries, then the fixed queries."""
    b_, q_, k1 = output.class_logits.shape
    h_, w_ = output.mask_logits.shape[-2:]
    out = torch.zeros(b_, h_, w_, dtype=torch.float64)
    for b in range(b_):
        probs = [torch.softmax(output.class_logits[b, q], 0).tolist() for q in range(q_)]
        masks = torch.sigmoid(output.mask_logits[b]).tolist()
        top = [max(p) for p in probs]
        known = [p.index(max(p)) != k1 - 1 for p in probs]
        inlier = [known[q] and top[q] > t_mask for q in range(q_)]
        border_set = [q for q in range(q_) if (known[q] if variant == "code" else inlier[q])]
        for i in range(h_):
            for j in range(w_):
                reject = 1.0
                for q in range(q_):
                    if inlier[q]:
                        reject = min(reject, 1 - masks[q][i][j] * top[q])
                for x in range(len(border_set)):
                    for y in range(x + 1, len(border_set)):
                        both = masks[border_set[x]][i][j] > t_border and masks[border_set[y]][i][j] > t_border
                        reject = min(reject, min(1 - float(both) + eps_border, 1.0))
                for q in rejected:
                    reject = min(reject, 1 - masks[q][i][j] * top[q])
                accept = 0.0
                for q in anomaly:
                    weight = top[q] if variant == "code" else probs[q][k1 - 1]
                    accept = max(accept, masks[q][i][j] * weight)
                out[b, i, j] = lam * reject + (1 - lam) * accept
    return out
