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
fills when any method's ``needs_flip`` is true (the inference loop does it).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from mask2anomaly.errors import UserError
from mask2anomaly.methods.mask_bands import mask_prob_bands
from mask2anomaly.models.output import MaskTransformerOutput


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
        dataset_logits: DenseHybrid's dataset-posterior logits ``[B, 2, h, w]`` (inlier, outlier)
            when the model has that head (a mask transformer's come with its output).
    """

    size: tuple[int, int]
    output: MaskTransformerOutput | None = None
    logits: torch.Tensor | None = None
    flipped: ScoreContext | None = None
    dataset_logits: torch.Tensor | None = None
    _cache: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_masks(
        cls,
        output: MaskTransformerOutput,
        size: tuple[int, int],
        flipped_output: MaskTransformerOutput | None = None,
    ) -> ScoreContext:
        """Context of a mask transformer's output, optionally with the output for the flipped images."""
        flipped = None if flipped_output is None else cls.from_masks(flipped_output, size)
        return cls(tuple(size), output=output, flipped=flipped, dataset_logits=output.dataset_logits)

    @classmethod
    def from_logits(
        cls,
        logits: torch.Tensor,
        size: tuple[int, int],
        flipped_logits: torch.Tensor | None = None,
        dataset_logits: torch.Tensor | None = None,
    ) -> ScoreContext:
        """Context of a per-pixel classifier's logits ``[B, K, h, w]`` (and its dataset-posterior
        logits ``[B, 2, h, w]`` when it has DenseHybrid's head)."""
        if logits.dim() != 4:
            raise UserError(f"per-pixel logits must be [B, K, H, W], got shape {tuple(logits.shape)}")
        flipped = None if flipped_logits is None else cls(tuple(size), logits=flipped_logits)
        return cls(tuple(size), logits=logits, flipped=flipped, dataset_logits=dataset_logits)

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

    def _bands(self, b: int, queries: torch.Tensor | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
        """``(top, bottom, sigmoid(M) [Q', bottom - top, W])`` bands of image ``b`` (all or the given queries).

        Slices of :attr:`mask_probs` when it has been computed, otherwise :func:`mask_prob_bands`; no
        band when no query is asked for. The bands of selected ``queries`` are scratch space the
        caller may overwrite.
        """
        if queries is not None and queries.numel() == 0:
            return
        if "mask_probs" in self._cache:
            probs = self._cache["mask_probs"][b]
            yield 0, self.size[0], probs if queries is None else probs[queries]
            return
        logits = self._masks().mask_logits[b]
        yield from mask_prob_bands(logits if queries is None else logits[queries], self.size)

    def max_weighted_mask(self, weights: torch.Tensor) -> torch.Tensor:
        """``[B, H, W]`` max over queries of ``weights[b, q] * sigmoid(M_q)``, for weights ``[B, Q] >= 0``.

        Only the queries of positive weight are read; 0 where no query has a positive weight.
        """
        out = weights.new_zeros((weights.shape[0], *self.size))
        for b in range(weights.shape[0]):
            queries = (weights[b] > 0).nonzero().squeeze(1)
            for top, bottom, probs in self._bands(b, queries):
                torch.amax(probs.mul_(weights[b, queries, None, None]), 0, out=out[b, top:bottom])
        return out

    def count_masks_above(self, selected: torch.Tensor, threshold: float) -> torch.Tensor:
        """``[B, H, W]`` number of selected queries (``[B, Q]`` bool) whose ``sigmoid(M_q) > threshold``."""
        out = torch.zeros((selected.shape[0], *self.size), dtype=torch.int64, device=selected.device)
        for b in range(selected.shape[0]):
            for top, bottom, probs in self._bands(b, selected[b].nonzero().squeeze(1)):
                out[b, top:bottom] = (probs > threshold).sum(0)
        return out

    def _class_weights(self, b: int) -> torch.Tensor:
        """``[K, Q]`` the known-class probabilities of image ``b``'s queries, the marginal's weights."""
        return self.class_probs[b, :, :-1].T.contiguous()

    def _compute_class_scores(self) -> torch.Tensor:
        if self.output is not None:
            probs = self.class_probs
            out = probs.new_zeros((probs.shape[0], probs.shape[-1] - 1, *self.size))
            for b in range(out.shape[0]):
                weights = self._class_weights(b)
                for top, bottom, masks in self._bands(b):
                    rows = out[b, :, top:bottom]
                    rows.copy_(torch.matmul(weights, masks.flatten(1)).view_as(rows))
            return out
        assert self.logits is not None
        if tuple(self.logits.shape[-2:]) == self.size:
            return self.logits
        return F.interpolate(self.logits, size=self.size, mode="bilinear", align_corners=False)

    @property
    def log_outlier_posterior(self) -> torch.Tensor:
        """``[B, H, W]`` log P(d_out | x) of DenseHybrid's head: its logits upsampled (bilinear) to
        :attr:`size`, then a log-softmax over the two channels."""

        def compute() -> torch.Tensor:
            if self.dataset_logits is None:
                raise UserError("this model has no dataset-posterior head (DenseHybrid)")
            logits = self.dataset_logits
            if tuple(logits.shape[-2:]) != self.size:
                logits = F.interpolate(logits, size=self.size, mode="bilinear", align_corners=False)
            return logits.log_softmax(1)[:, 1]

        return self._cached("log_outlier_posterior", compute)

    @property
    def log_known_likelihood(self) -> torch.Tensor:
        """``[B, H, W]`` log of the unnormalised density of the known classes, DenseHybrid's
        ``log p̂(x)``: ``logsumexp`` of a per-pixel model's logits; for a mask transformer, whose
        class scores are mask-weighted probabilities rather than logits, ``log sum_c f_c`` (the
        marginal read as ``exp`` of logits, so the known-class mass covering the pixel)."""

        def compute() -> torch.Tensor:
            if self.output is None:
                return torch.logsumexp(self.class_scores, 1)
            mass = self.class_scores.sum(1)
            return mass.clamp_min(torch.finfo(mass.dtype).tiny).log()

        return self._cached("log_known_likelihood", compute)

    @property
    def class_scores(self) -> torch.Tensor:
        """``[B, K, H, W]`` per-pixel class scores f: the semantic marginal, or the upsampled logits."""
        return self._cached("class_scores", self._compute_class_scores)

    def prepare(self, methods: Sequence[AnomalyMethod], closed_set: bool = False) -> None:
        """Compute now the pieces that several consumers of this context will share.

        The whole :attr:`class_scores` when one of ``methods`` reads them (the maximum then derives
        from them rather than from a pass of its own over the masks); :attr:`class_argmax` together
        with :attr:`class_max` when ``closed_set`` (the caller will read the closed-set prediction).
        """
        if any(m.reads_class_scores for m in methods):
            self._cached("class_scores", self._compute_class_scores)
        if closed_set:
            self._class_max(argmax=True)

    def _class_max(self, argmax: bool) -> None:
        if "class_scores" in self._cache or self.output is None:
            if argmax:
                self._cache["class_max"], self._cache["class_argmax"] = self.class_scores.max(1)
            else:
                self._cache["class_max"] = self.class_scores.amax(1)
            return
        probs = self.class_probs
        values = probs.new_zeros((probs.shape[0], *self.size))
        labels = torch.zeros(values.shape, dtype=torch.int64, device=values.device) if argmax else None
        for b in range(values.shape[0]):
            weights = self._class_weights(b)
            for top, bottom, masks in self._bands(b):
                scores = torch.matmul(weights, masks.flatten(1))
                if labels is None:
                    torch.amax(scores, 0, out=values[b, top:bottom].view(-1))
                else:
                    torch.max(scores, 0, out=(values[b, top:bottom].view(-1), labels[b, top:bottom].view(-1)))
        self._cache["class_max"] = values
        if labels is not None:
            self._cache["class_argmax"] = labels

    @property
    def class_max(self) -> torch.Tensor:
        """``[B, H, W]`` the largest class score, ``class_scores.amax(1)``, without keeping all K maps."""
        if "class_max" not in self._cache:
            self._class_max(argmax=False)
        return self._cache["class_max"]

    @property
    def class_argmax(self) -> torch.Tensor:
        """``[B, H, W]`` int64 closed-set prediction, ``class_scores.argmax(1)`` (first of ties)."""
        if "class_argmax" not in self._cache:
            self._class_max(argmax=True)
        return self._cache["class_argmax"]

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
        reads_class_scores: whether it reads all K maps of :attr:`ScoreContext.class_scores` (False
            for the methods that only need their maximum or the masks; it only affects speed).
        flags: the options usable after ``+`` in a method name, each mapped to the field values it
            sets (``{"tta": {"tta": True}}``).
    """

    key: ClassVar[str]
    needs_masks: ClassVar[bool]
    reads_class_scores: ClassVar[bool] = True
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

    def check_model(self, config: Any) -> None:  # noqa: B027 (a hook: most methods fit every model)
        """Refuse a model this configuration does not belong to (``config``: the model's config);
        the default accepts every model."""

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


def score_methods(
    ctx: ScoreContext, methods: Sequence[AnomalyMethod], closed_set: bool = False
) -> dict[str, torch.Tensor]:
    """``{method.name: scores [B, H, W]}`` of every method on one context, shared pieces computed once.

    ``closed_set``: the caller will also read :attr:`ScoreContext.class_argmax`.
    """
    ctx.prepare(methods, closed_set)
    return {m.name: m(ctx) for m in methods}
