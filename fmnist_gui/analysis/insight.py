"""What the model gets right and wrong: test-set predictions, confusion matrix, drill-down.

No Qt here. ``predict(model, split)`` runs the model once over the test split
and keeps every probability; everything the Predictions and Confusion views
show (filters, hardest-first order, the 10x10 counts) is derived from that one
``Predictions`` object, so the gallery and the matrix always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from fmnist_gui.training.data import CLASS_NAMES, Split

NUM_CLASSES = len(CLASS_NAMES)
SortKind = Literal["hardest", "random"]


@dataclass(frozen=True)
class Predictions:
    """The model's view of every test image, by index into the split."""

    probabilities: torch.Tensor  # float32 (N, 10), softmax of the logits
    labels: torch.Tensor  # int64 (N,), the true classes

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def predicted(self) -> torch.Tensor:
        """int64 (N,): the class with the highest probability (the tutorial's ``argmax(1)``)."""
        return self.probabilities.argmax(1)

    @property
    def true_class_probability(self) -> torch.Tensor:
        """float32 (N,): how much the model believed the right answer; low means hard."""
        return self.probabilities.gather(1, self.labels.unsqueeze(1)).squeeze(1)

    @property
    def correct(self) -> torch.Tensor:
        return self.predicted == self.labels

    @property
    def accuracy(self) -> float:
        return float(self.correct.double().mean()) if len(self) else 0.0


@torch.no_grad()
def predict(model: torch.nn.Module, split: Split, batch_size: int = 1000) -> Predictions:
    """Run ``model`` over ``split`` (in eval mode) and keep all class probabilities.

    The images are converted as ``ToTensor`` does (``uint8 / 255``), on the
    model's own device; the result lives on the CPU for the views.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks = []
    try:
        for first in range(0, len(split), batch_size):
            images = split.images[first : first + batch_size].to(device)
            logits = model(images.unsqueeze(1).to(torch.float32).div(255))
            chunks.append(torch.softmax(logits.float(), dim=1).cpu())
    finally:
        model.train(was_training)
    probabilities = torch.cat(chunks) if chunks else torch.zeros((0, NUM_CLASSES))
    return Predictions(probabilities, split.labels.cpu().to(torch.int64))


def confusion_matrix(predictions: Predictions) -> torch.Tensor:
    """int64 (10, 10): row = true class, column = predicted class."""
    index = predictions.labels * NUM_CLASSES + predictions.predicted
    return torch.bincount(index, minlength=NUM_CLASSES * NUM_CLASSES).reshape(
        NUM_CLASSES, NUM_CLASSES
    )


def per_class_accuracy(matrix: torch.Tensor) -> list[float | None]:
    """Recall of each true class (diagonal / row sum); ``None`` for a class with no images."""
    rows = matrix.sum(1)
    return [
        float(matrix[c, c]) / float(rows[c]) if int(rows[c]) else None for c in range(len(rows))
    ]


@dataclass(frozen=True)
class GalleryFilter:
    """Which test images the gallery shows; the conditions combine with "and".

    ``GalleryFilter()`` is all images; ``misclassified=True`` only the wrong
    ones; ``true_class``/``predicted_class`` pin one class each, and both
    together are one confusion-matrix cell.
    """

    true_class: int | None = None
    predicted_class: int | None = None
    misclassified: bool = False

    def __post_init__(self) -> None:
        for value, what in (
            (self.true_class, "true_class"),
            (self.predicted_class, "predicted_class"),
        ):
            if value is not None and not (isinstance(value, int) and 0 <= value < NUM_CLASSES):
                raise ValueError(f"{what} must be a class index from 0 to 9 or None, got {value!r}")

    @classmethod
    def cell(cls, true_class: int, predicted_class: int) -> GalleryFilter:
        """The images of one confusion-matrix cell."""
        return cls(true_class, predicted_class)

    def mask(self, predictions: Predictions) -> torch.Tensor:
        """bool (N,): the images this filter lets through."""
        labels, predicted = predictions.labels, predictions.predicted
        keep = torch.ones(len(predictions), dtype=torch.bool)
        if self.misclassified:
            keep &= predicted != labels
        if self.true_class is not None:
            keep &= labels == self.true_class
        if self.predicted_class is not None:
            keep &= predicted == self.predicted_class
        return keep

    def describe(self) -> str:
        """Words for the gallery's caption."""
        parts = []
        if self.true_class is not None:
            parts.append(f"true {CLASS_NAMES[self.true_class]}")
        if self.predicted_class is not None:
            parts.append(f"predicted {CLASS_NAMES[self.predicted_class]}")
        if self.misclassified:
            parts.append("misclassified")
        return ", ".join(parts) if parts else "all test images"


def select(
    predictions: Predictions,
    gallery_filter: GalleryFilter = GalleryFilter(),
    sort: SortKind = "hardest",
    limit: int | None = 36,
    seed: int = 0,
) -> list[int]:
    """Indices into the test split: filtered, ordered, at most ``limit`` of them.

    ``hardest`` puts the lowest probability of the true class first (ties by
    index, so the order is stable); ``random`` shuffles with ``seed`` so that a
    refresh on demand can show a new sample and a test can repeat one.
    """
    if sort not in ("hardest", "random"):
        raise ValueError(f"unknown sort order {sort!r}; use 'hardest' or 'random'")
    candidates = gallery_filter.mask(predictions).nonzero().squeeze(1)
    if sort == "hardest":
        confidence = predictions.true_class_probability[candidates].double()
        # Stable sort keeps equal confidences in index order: repeatable galleries.
        order = torch.sort(confidence, stable=True).indices
    else:
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(candidates), generator=generator)
    chosen = candidates[order]
    if limit is not None:
        chosen = chosen[:limit]
    return chosen.tolist()


def count(predictions: Predictions, gallery_filter: GalleryFilter) -> int:
    """How many test images the filter lets through (the gallery shows a page of them)."""
    return int(gallery_filter.mask(predictions).sum())


__all__ = [
    "NUM_CLASSES",
    "GalleryFilter",
    "Predictions",
    "confusion_matrix",
    "count",
    "per_class_accuracy",
    "predict",
    "select",
]
