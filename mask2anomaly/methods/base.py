"""The scoring-method interface and the per-batch context that shares work between methods.

A method turns model outputs into an anomaly score map at image resolution, ``[B, H, W]``, higher
meaning more anomalous. Several methods usually score the same forward pass, so they all read from
one :class:`ScoreContext`, which computes each shared piece (mask probabilities upsampled to the
image, the semantic marginal, softmaxed class scores) the first time a method asks for it and keeps it for
the next one.

Two kinds of model feed a context:

- mask transformers (:class:`~mask2anomaly.models.output.MaskTransformerOutput`), whose per-pixel
  class scores are the semantic marginal ``f = softmax(C)[:, :K]^T sigmoid(M)`` (paper 000 Eq. 3);
- per-pixel classifiers, whose class scores are their logits ``[B, K, h, w]``.

A method declares ``needs_masks``: the per-pixel methods (``msp``, ``entropy``, ``max_logit``,
``energy``) only read :attr:`ScoreContext.class_scores` / :attr:`ScoreContext.pixel_probs` and
work with both kinds; the mask methods also read the queries. Test-time augmentation reads the
context of the horizontally flipped image from :attr:`ScoreContext.flipped`, which the caller
fills when any method's ``needs_flip`` is true (:func:`score_batch` does it).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from mask2anomaly.errors import UserError
from mask2anomaly.models.output import MaskTransformerOutput
from mask2anomaly.models.postprocess import marginal


@dataclass
class ScoreContext:
    """One batch of model outputs plus a cache of the pieces several methods share.

    Build it with :meth:`from_masks` or :meth:`from_logits`; read it only through its properties.

    Attributes:
        size: ``(H, W)`` the scores are produced at (the network input size).
        output: mask-transformer output (``class_logits [B, Q, K + 1]``, ``mask_logits [B, Q, h, w]``),
            or ``None`` for a per-pixel model.
        logits: per-pixel class logits ``[B, K, h, w]``, or ``None`` for a mask transformer.
        flipped: the context of the horizontally flipped images (for test-time augmentation), or
            ``None``.
    """

    size: tuple[int, int]
    output: MaskTransformerOutput | None = None
    logits: torch.Tensor | None = None
    flipped: ScoreContext | None = None
    _cache: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_masks(
        cls,
        output: MaskTransformerOutput,
        size: tuple[int, int],
        flipped_output: MaskTransformerOutput | None = None,
    ) -> ScoreContext:
        """Context of a mask transformer's output, optionally with the output for the flipped images."""
        flipped = None if flipped_output is None else cls(tuple(size), output=flipped_output)
        return cls(tuple(size), output=output, flipped=flipped)

    @classmethod
    def from_logits(
        cls, logits: torch.Tensor, size: tuple[int, int], flipped_logits: torch.Tensor | None = None
    ) -> ScoreContext:
        """Context of a per-pixel classifier's logits ``[B, K, h, w]``."""
        if logits.dim() != 4:
            raise UserError(f"per-pixel logits must be [B, K, H, W], got shape {tuple(logits.shape)}")
        flipped = None if flipped_logits is None else cls(tuple(size), logits=flipped_logits)
        return cls(tuple(size), logits=logits, flipped=flipped)

    def __post_init__(self) -> None:
        if (self.output is None) == (self.logits is None):
            raise UserError("a score context needs exactly one of mask-transformer outputs or per-pixel logits")

    def _cached(self, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def has_masks(self) -> bool:
        """Whether the context holds query masks (a mask transformer) rather than per-pixel logits."""
        return self.output is not None

    def _masks(self) -> MaskTransformerOutput:
        if self.output is None:
            raise UserError("this method needs a mask transformer's query outputs, not per-pixel logits")
        return self.output

    @property
    def num_known(self) -> int:
        """K, the number of known classes."""
        return self.class_scores.shape[1]

    @property
    def class_probs(self) -> torch.Tensor:
        """``[B, Q, K + 1]`` softmax of the class logits of each query, "no object" last."""
        return self._cached("class_probs", lambda: self._masks().class_logits.softmax(-1))

    @property
    def mask_probs(self) -> torch.Tensor:
        """``[B, Q, H, W]`` mask probabilities ``sigmoid(M)``, the logits upsampled (bilinear) to :attr:`size`."""

        def compute() -> torch.Tensor:
            masks = self._masks().mask_logits
            if tuple(masks.shape[-2:]) == self.size:
                return masks.sigmoid()
            return F.interpolate(masks, size=self.size, mode="bilinear", align_corners=False).sigmoid_()

        return self._cached("mask_probs", compute)

    def max_weighted_mask(self, weights: torch.Tensor) -> torch.Tensor:
        """``[B, H, W]`` max over queries of ``weights[b, q] * sigmoid(M_q)``, for weights ``[B, Q] >= 0``.

        Only the queries of positive weight are read; 0 where no query has a positive weight.
        """
        out = weights.new_zeros((weights.shape[0], *self.size))
        for b in range(weights.shape[0]):
            queries = (weights[b] > 0).nonzero().squeeze(1)
            if queries.numel():
                out[b] = (weights[b, queries, None, None] * self.mask_probs[b, queries]).amax(0)
        return out

    def count_masks_above(self, selected: torch.Tensor, threshold: float) -> torch.Tensor:
        """``[B, H, W]`` number of selected queries (``[B, Q]`` bool) whose ``sigmoid(M_q) > threshold``."""
        out = torch.zeros((selected.shape[0], *self.size), dtype=torch.int64, device=selected.device)
        for b in range(selected.shape[0]):
            queries = selected[b].nonzero().squeeze(1)
            if queries.numel():
                out[b] = (self.mask_probs[b, queries] > threshold).sum(0, dtype=torch.int32)
        return out

    @property
    def class_scores(self) -> torch.Tensor:
        """``[B, K, H, W]`` per-pixel class scores f: the semantic marginal, or the upsampled logits."""

        def compute() -> torch.Tensor:
            if self.output is not None:
                return marginal(self.class_probs, self.mask_probs)
            assert self.logits is not None
            if tuple(self.logits.shape[-2:]) == self.size:
                return self.logits
            return F.interpolate(self.logits, size=self.size, mode="bilinear", align_corners=False)

        return self._cached("class_scores", compute)

    @property
    def pixel_probs(self) -> torch.Tensor:
        """``[B, K, H, W]`` per-pixel class distribution.

        For a per-pixel model the softmax of its logits; for a mask transformer the marginal
        normalised over the K known classes (the marginal itself does not sum to one: the "no object"
        mass and the mask overlaps are dropped).
        """

        def compute() -> torch.Tensor:
            if self.output is None:
                return self.class_scores.softmax(1)
            f = self.class_scores
            return f / f.sum(1, keepdim=True).clamp_min(torch.finfo(f.dtype).tiny)

        return self._cached("pixel_probs", compute)


@dataclass(frozen=True)
class AnomalyMethod(ABC):
    """Base of every scoring method: a frozen dataclass of hyper-parameters plus :meth:`score`.

    Class attributes:
        key: the registry name (``"mask2anomaly"``).
        needs_masks: whether the method reads query outputs (mask transformers only).
        flags: the options usable after ``+`` in a method name, each mapped to the field values it
            sets (``{"tta": {"tta": True}}``).
    """

    key: ClassVar[str]
    needs_masks: ClassVar[bool]
    flags: ClassVar[dict[str, dict[str, Any]]] = {}

    @property
    def needs_flip(self) -> bool:
        """Whether :meth:`score` reads the flipped images' context."""
        return False

    @property
    def name(self) -> str:
        """The canonical name, the method key plus every flag whose settings this instance has."""
        on = [flag for flag, values in self.flags.items() if all(getattr(self, k) == v for k, v in values.items())]
        return "+".join([self.key, *on])

    def __call__(self, ctx: ScoreContext) -> torch.Tensor:
        """Check that ``ctx`` holds what the method needs, then score it; returns ``[B, H, W]``."""
        if self.needs_masks and not ctx.has_masks:
            raise UserError(f"method {self.name!r} needs a mask transformer's outputs, not per-pixel logits")
        if self.needs_flip and ctx.flipped is None:
            raise UserError(f"method {self.name!r} needs the outputs for the horizontally flipped images")
        return self.score(ctx)

    @abstractmethod
    def score(self, ctx: ScoreContext) -> torch.Tensor:
        """Anomaly scores ``[B, H, W]`` at ``ctx.size``, higher = more anomalous."""

    @classmethod
    def build(cls, flags: Sequence[str] = (), **params: Any) -> AnomalyMethod:
        """The method with the given ``+`` flags and field values; unknown ones raise :class:`UserError`."""
        values: dict[str, Any] = {}
        for flag in flags:
            if flag not in cls.flags:
                valid = ", ".join(cls.flags) or "none"
                raise UserError(f"method {cls.key!r} has no option {flag!r}; valid options: {valid}")
            for k, v in cls.flags[flag].items():
                if k in values and values[k] != v:
                    raise UserError(f"method {cls.key!r}: option {flag!r} conflicts with another option")
                values[k] = v
        fields = [f.name for f in dataclasses.fields(cls)]
        for k in params:
            if k not in fields:
                raise UserError(f"method {cls.key!r} has no parameter {k!r}; valid parameters: {', '.join(fields)}")
        return cls(**{**values, **params})


def score_batch(
    model: Callable[[torch.Tensor], MaskTransformerOutput],
    pixel_values: torch.Tensor,
    methods: Sequence[AnomalyMethod],
) -> dict[str, torch.Tensor]:
    """Run a mask transformer once (twice when a method needs the flipped images) and score with every method.

    Args:
        model: maps ``pixel_values [B, 3, H, W]`` to a :class:`MaskTransformerOutput`.
        pixel_values: the network input; scores come at its size ``(H, W)`` (crop each image's own
            size out of them when the batch was padded).
        methods: the methods to apply to the same forward pass.

    Returns:
        ``{method.name: scores [B, H, W]}``.
    """
    size = (pixel_values.shape[-2], pixel_values.shape[-1])
    output = model(pixel_values)
    flipped = model(pixel_values.flip(-1)) if any(m.needs_flip for m in methods) else None
    ctx = ScoreContext.from_masks(output, size, flipped)
    return {m.name: m(ctx) for m in methods}
