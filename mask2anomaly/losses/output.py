"""What a loss returns: the total to back-propagate and its named, already weighted parts."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossOutput:
    """A weighted sum of named loss terms.

    Attributes:
        total: scalar, ``sum(terms.values())``; the tensor to call ``backward`` on.
        terms: the parts, each already multiplied by its weight, e.g. ``loss_ce``, ``loss_mask``,
            ``loss_dice`` for the final prediction and ``loss_ce_0`` ... for the intermediate ones.
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor]

    def merge(self, other: LossOutput) -> LossOutput:
        """Both losses in one: totals added, terms joined.

        Args:
            other: a loss whose term names differ from this one's.

        Returns:
            A new :class:`LossOutput`.

        Raises:
            ValueError: when a term name occurs in both.
        """
        shared = sorted(self.terms.keys() & other.terms.keys())
        if shared:
            raise ValueError(f"cannot merge losses that both have the terms {shared}")
        return LossOutput(total=self.total + other.total, terms={**self.terms, **other.terms})
