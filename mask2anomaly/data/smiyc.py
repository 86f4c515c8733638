"""SegmentMeIfYouCan native layout: ``images/<name>.<ext>`` + ``labels_masks/<name>_labels_semantic.png``.

Anomaly track (``dataset_AnomalyTrack``, jpg images) and obstacle track (``dataset_ObstacleTrack``,
webp images). Labels: 0 = inlier (obstacle track: road), 1 = anomaly / obstacle, 255 = void. Images
without a label file are the hidden test set; they are left out and counted in ``unlabeled``.
"""

from __future__ import annotations

from pathlib import Path

from mask2anomaly.data.validation import PairedFolderReader


def smiyc_label_name(stem: str) -> str:
    """Label file name ``<stem>_labels_semantic.png``."""
    return f"{stem}_labels_semantic.png"


class SmiycReader(PairedFolderReader):
    """One SMIYC track in its native layout.

    Args:
        root: The track folder (``dataset_AnomalyTrack`` or ``dataset_ObstacleTrack``).
        skip_bad: Record labels without images instead of raising.
    """

    def __init__(self, root: str | Path, *, skip_bad: bool = False) -> None:
        super().__init__(
            root,
            label_name=smiyc_label_name,
            label_glob="*_labels_semantic.png",
            unlabeled_ok=True,
            skip_bad=skip_bad,
        )
