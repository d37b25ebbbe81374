"""Predictions, confusion matrix and gallery selection on tiny real IDX data."""

from __future__ import annotations

import pytest
import torch

from fmnist_gui.analysis import insight
from fmnist_gui.analysis.insight import GalleryFilter
from fmnist_gui.training.config import TrainConfig
from fmnist_gui.training.loop import evaluate
from fmnist_gui.training.trainer import Trainer


@pytest.fixture
def trained(tiny_data, plugins):
    trainer = Trainer(TrainConfig(epochs=1, batch_size=32, lr=0.5, seed=3), tiny_data, plugins)
    for _ in trainer.run():
        pass
    return trainer


def test_predictions_match_the_model(trained, tiny_data):
    preds = insight.predict(trained.model, tiny_data.test)
    X = tiny_data.test.images.unsqueeze(1).float() / 255
    with torch.no_grad():
        logits = trained.model(X)
    assert torch.equal(preds.predicted, logits.argmax(1))
    assert torch.allclose(preds.probabilities.sum(1), torch.ones(len(preds)), atol=1e-5)
    # The accuracy agrees with the engine's own test loop.
    _, accuracy = evaluate(
        trained.model, trained.loss_fn, trained.test_loader, loss_spec=trained.loss_spec
    )
    assert preds.accuracy == pytest.approx(accuracy)
    assert trained.model.training  # predict() restores the mode it found


def test_confusion_matrix_sums_to_test_set(trained, tiny_data):
    preds = insight.predict(trained.model, tiny_data.test)
    matrix = insight.confusion_matrix(preds)
    assert matrix.shape == (10, 10)
    assert int(matrix.sum()) == len(tiny_data.test)
    assert torch.equal(matrix.sum(1), torch.bincount(tiny_data.test.labels, minlength=10))
    assert int(matrix.trace()) == int(preds.correct.sum())
    accuracy = insight.per_class_accuracy(matrix)
    for c, value in enumerate(accuracy):
        rows = int(matrix[c].sum())
        assert value == (None if rows == 0 else pytest.approx(int(matrix[c, c]) / rows))


def _fake(labels, probs) -> insight.Predictions:
    return insight.Predictions(
        torch.tensor(probs, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64)
    )


def test_hardest_first_and_filters():
    eye = torch.eye(10)
    # Image 0: true 1, predicted 1 with 0.6; image 1: true 1, predicted 2 (0.1 on 1);
    # image 2: true 2, predicted 2 with 0.9; image 3: true 1, predicted 1 with 0.95.
    probs = [
        (0.6 * eye[1] + 0.4 * eye[2]).tolist(),
        (0.1 * eye[1] + 0.9 * eye[2]).tolist(),
        (0.9 * eye[2] + 0.1 * eye[0]).tolist(),
        (0.95 * eye[1] + 0.05 * eye[3]).tolist(),
    ]
    preds = _fake([1, 1, 2, 1], probs)
    assert insight.select(preds) == [1, 0, 2, 3]
    assert insight.select(preds, GalleryFilter(misclassified=True)) == [1]
    assert insight.select(preds, GalleryFilter(true_class=1)) == [1, 0, 3]
    assert insight.select(preds, GalleryFilter(predicted_class=2)) == [1, 2]
    assert insight.select(preds, GalleryFilter.cell(1, 1)) == [0, 3]
    assert insight.select(preds, limit=2) == [1, 0]
    shuffled = insight.select(preds, sort="random", seed=5)
    assert sorted(shuffled) == [0, 1, 2, 3]
    assert shuffled == insight.select(preds, sort="random", seed=5)
    assert insight.count(preds, GalleryFilter(true_class=1)) == 3
    assert insight.select(preds, GalleryFilter(true_class=1, misclassified=True)) == [1]
    assert GalleryFilter.cell(1, 2).describe() == "true Trouser, predicted Pullover"
    assert GalleryFilter().describe() == "all test images"


def test_bad_filters_and_sorts_are_refused():
    with pytest.raises(ValueError, match="true_class"):
        GalleryFilter(true_class=10)
    with pytest.raises(ValueError, match="predicted_class"):
        GalleryFilter.cell(1, -1)
    preds = _fake([0], [torch.eye(10)[0].tolist()])
    with pytest.raises(ValueError, match="sort order"):
        insight.select(preds, sort="best")
