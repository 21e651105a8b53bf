"""Metrics against hand-computed answers and a naive per-pixel count."""

import math

import pytest
import torch

from course_utils import metrics

# 3 classes, one 2x3 mask. Pairs (truth, pred): (0,0) (0,1) (1,1) | (1,1) (2,2) (2,0)
TRUTH = torch.tensor([[[0, 0, 1], [1, 2, 2]]])  # (1, 2, 3)
PRED = torch.tensor([[[0, 1, 1], [1, 2, 0]]])
HAND_CM = torch.tensor([[1, 1, 0],
                        [0, 2, 0],
                        [1, 0, 1]])  # rows = truth, cols = prediction
# IoU: class 0: 1 / (2 + 2 - 1); class 1: 2 / (2 + 3 - 2); class 2: 1 / (2 + 1 - 1)
HAND_IOU = torch.tensor([1 / 3, 2 / 3, 1 / 2], dtype=torch.float64)


def naive_confusion(preds, targets, n):
    """Per-pixel Python loop: slow, obviously right."""
    cm = torch.zeros(n, n, dtype=torch.long)
    for t, p in zip(targets.flatten().tolist(), preds.flatten().tolist()):
        if 0 <= t < n:
            cm[t, p] += 1
    return cm


def test_confusion_matrix_hand_example():
    cm = metrics.confusion_matrix(PRED, TRUTH, 3)
    assert cm.dtype == torch.long
    assert torch.equal(cm, HAND_CM)


def test_compute_hand_example():
    matrix = metrics.ConfusionMatrix(3)
    matrix.update(PRED, TRUTH)
    scores = matrix.compute()
    assert scores["accuracy"] == pytest.approx(4 / 6)
    torch.testing.assert_close(scores["per_class_accuracy"],
                               torch.tensor([1 / 2, 2 / 2, 1 / 2], dtype=torch.float64))
    torch.testing.assert_close(scores["iou"], HAND_IOU)
    assert scores["miou"] == pytest.approx(0.5)
    assert torch.equal(scores["confusion"], HAND_CM)
    assert metrics.mean_iou(HAND_CM) == pytest.approx(0.5)
    torch.testing.assert_close(metrics.iou_per_class(HAND_CM), HAND_IOU)


def test_miou_ignores_255():
    truth = torch.cat([TRUTH, torch.full((1, 2, 3), 255)], dim=2)  # (1, 2, 6): 6 ignored pixels
    pred = torch.cat([PRED, torch.tensor([[[0, 1, 2], [2, 1, 0]]])], dim=2)
    matrix = metrics.ConfusionMatrix(3)
    matrix.update(pred, truth)
    scores = matrix.compute()
    assert torch.equal(scores["confusion"], HAND_CM)
    assert scores["miou"] == pytest.approx(0.5)
    assert scores["accuracy"] == pytest.approx(4 / 6)


def test_class_absent_from_truth_and_prediction_is_nan_and_skipped():
    matrix = metrics.ConfusionMatrix(4)  # class 3 never appears
    matrix.update(PRED, TRUTH)
    scores = matrix.compute()
    assert math.isnan(scores["iou"][3])
    assert math.isnan(scores["per_class_accuracy"][3])
    assert scores["miou"] == pytest.approx(0.5)  # not 0.375 (= 1.5 / 4)


def test_class_predicted_but_never_true_has_iou_zero():
    cm = metrics.confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 0]), 2)
    iou = metrics.iou_per_class(cm)
    assert iou[1] == 0 and iou[0] == pytest.approx(1 / 3)


def test_predicting_only_background_has_high_pixel_accuracy_and_low_miou():
    truth = torch.zeros(1, 10, 10, dtype=torch.long)
    truth[0, :1] = 1  # 10 % of the pixels
    truth[0, 1:2, :5] = 2  # 5 %
    pred = torch.zeros_like(truth)
    matrix = metrics.ConfusionMatrix(3)
    matrix.update(pred, truth)
    scores = matrix.compute()
    assert scores["accuracy"] == pytest.approx(0.85)
    assert scores["miou"] == pytest.approx(0.85 / 3)  # background 0.85, the two objects 0
    assert metrics.pixel_accuracy(pred, truth) == pytest.approx(0.85)


def test_accumulating_unequal_batches_equals_one_big_batch():
    g = torch.Generator().manual_seed(0)
    truth = torch.randint(0, 5, (9, 7, 6), generator=g)
    truth[torch.rand(truth.shape, generator=g) < 0.2] = 255
    pred = torch.randint(0, 5, (9, 7, 6), generator=g)
    matrix = metrics.ConfusionMatrix(5)
    for lo, hi in [(0, 5), (5, 8), (8, 9)]:  # batches of 5, 3 and 1 images
        matrix.update(pred[lo:hi], truth[lo:hi])
    whole = metrics.ConfusionMatrix(5)
    whole.update(pred, truth)
    naive = naive_confusion(pred, truth, 5)
    assert torch.equal(matrix.compute()["confusion"], naive)
    assert torch.equal(whole.compute()["confusion"], naive)
    assert matrix.compute()["miou"] == whole.compute()["miou"]
    matrix.reset()
    assert math.isnan(matrix.compute()["accuracy"])


def test_classification_accuracy_from_logits_and_preds():
    logits = torch.tensor([[2.0, 1.0, 0.0],   # pred 0
                           [0.0, 3.0, 1.0],   # pred 1
                           [0.0, 0.0, 5.0],   # pred 2
                           [4.0, 0.0, 1.0]])  # pred 0
    labels = torch.tensor([0, 1, 2, 2])
    assert metrics.accuracy(logits, labels) == pytest.approx(0.75)
    assert metrics.accuracy(logits.argmax(1), labels) == pytest.approx(0.75)
    matrix = metrics.ConfusionMatrix(3)
    matrix.update(logits.argmax(1), labels)
    assert matrix.compute()["accuracy"] == pytest.approx(0.75)


def test_targets_255_never_counted_in_accuracy():
    truth = torch.tensor([[0, 1, 255, 255]])
    pred = torch.tensor([[0, 1, 2, 0]])  # wrong only where the truth is 255
    assert metrics.pixel_accuracy(pred, truth) == 1.0
    logits = torch.nn.functional.one_hot(pred, 3).permute(0, 2, 1).float()  # (1, 3, 4)
    assert metrics.accuracy(logits, truth) == 1.0
    matrix = metrics.ConfusionMatrix(3)
    matrix.update(pred, truth)
    assert matrix.compute()["accuracy"] == 1.0
    assert int(matrix.compute()["confusion"].sum()) == 2


def test_uint8_masks_do_not_overflow():
    truth = torch.tensor([[20, 20, 255]], dtype=torch.uint8)
    pred = torch.tensor([[20, 3, 7]])
    cm = metrics.confusion_matrix(pred, truth, 21)
    assert cm[20, 20] == 1 and cm[20, 3] == 1 and cm.sum() == 2


def test_clear_errors_on_wrong_inputs():
    logits = torch.randn(2, 3, 4, 4)
    masks = torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(TypeError, match="argmax"):
        metrics.confusion_matrix(logits, masks, 3)
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\).*\(2, 4, 4\).*argmax"):
        metrics.confusion_matrix(logits.argmax(1)[:, None].expand(2, 3, 4, 4), masks, 3)
    with pytest.raises(ValueError, match="outside 0..2"):
        metrics.confusion_matrix(torch.full((2, 4, 4), 3), masks, 3)


# ---- One rule for which targets count (metrics.scored): metrics and the engine agree -------------
def _model_and_batch(ignored_value):
    """A 1x1-conv "segmenter" (4 classes) and one batch whose first row of targets is ``ignored_value``."""
    from torch import nn
    torch.manual_seed(0)
    model = nn.Conv2d(3, 4, 1)
    images = torch.randn(2, 3, 5, 5)
    targets = torch.randint(0, 4, (2, 5, 5))
    targets[:, 0] = ignored_value
    return model, images, targets


def test_with_ignore_index_minus_100_evaluate_training_and_every_metric_agree():
    """nn.CrossEntropyLoss's own ignore_index (-100), which the engine accepts, is the one skipped everywhere."""
    from torch import nn

    from course_utils import engine
    model, images, targets = _model_and_batch(-100)
    criterion = nn.CrossEntropyLoss()  # ignore_index=-100
    logits = model(images).detach()
    preds = logits.argmax(1)
    expected = float(((preds == targets)[:, 1:]).double().mean())  # rows 1.. only: row 0 is ignored
    evaluated = engine.evaluate(model, [(images, targets)], "cpu", 4, criterion=criterion, progress=False)
    matrix = metrics.ConfusionMatrix(4, ignore_index=-100)
    matrix.update(preds, targets)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: training scores the same weights
    trained = engine.train_one_epoch(model, [(images, targets)], criterion, optimizer, "cpu", progress=False)
    for value in (evaluated["accuracy"], metrics.pixel_accuracy(preds, targets, ignore_index=-100),
                  metrics.accuracy(logits, targets, ignore_index=-100), matrix.compute()["accuracy"],
                  trained["accuracy"]):
        assert value == pytest.approx(expected)
    assert int(evaluated["confusion"].sum()) == 2 * 4 * 5  # the 10 ignored pixels are not counted


def test_a_target_that_is_neither_a_class_nor_ignored_is_a_data_error_everywhere():
    """255 while the loss ignores -100 (or -1 with the default 255): refused, never silently skipped or scored."""
    from torch import nn

    from course_utils import engine
    model, images, targets = _model_and_batch(255)
    logits = model(images).detach()
    preds = logits.argmax(1)
    for score in (lambda: metrics.confusion_matrix(preds, targets, 4, ignore_index=-100),
                  lambda: metrics.pixel_accuracy(preds, targets, ignore_index=-100, num_classes=4),
                  lambda: metrics.accuracy(logits, targets, ignore_index=-100),
                  lambda: engine.evaluate(model, [(images, targets)], "cpu", 4,
                                          criterion=nn.CrossEntropyLoss(), progress=False)):
        with pytest.raises(ValueError, match=r"\[255\]"):
            score()
    targets[:, 0] = -1
    for score in (lambda: metrics.confusion_matrix(preds, targets, 4), lambda: metrics.pixel_accuracy(preds, targets)):
        with pytest.raises(ValueError, match=r"\[-1\].*ignore_index=255"):
            score()
    targets[:, 0] = 7  # >= num_classes: known only where the number of classes is
    with pytest.raises(ValueError, match=r"\[7\].*0\.\.3"):
        metrics.confusion_matrix(preds, targets, 4)


def test_scored_is_the_rule_and_an_ignore_index_inside_the_classes_is_skipped():
    targets = torch.tensor([0, 1, 2, 255, -100, 9])
    assert metrics.scored(targets, 3).tolist() == [True, True, True, False, False, False]
    assert metrics.scored(targets, None).tolist() == [True, True, True, False, False, True]
    assert metrics.scored(targets, 3, ignore_index=0).tolist() == [False, True, True, False, False, False]
    assert metrics.unknown_targets(targets, 3).tolist() == [False, False, False, False, True, True]
    cm = metrics.confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 2, ignore_index=0)
    assert cm.tolist() == [[0, 0], [0, 1]]  # background (0) ignored, as CrossEntropyLoss(ignore_index=0) does
    with pytest.raises(ValueError, match=r"\[5\]"):  # 5 is neither a class nor the ignored 0
        metrics.confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 5, 1]), 2, ignore_index=0)
    with pytest.raises(ValueError, match=r"\[5\]"):
        metrics.pixel_accuracy(torch.tensor([0, 1, 1]), torch.tensor([0, 5, 1]), ignore_index=0, num_classes=2)
    assert metrics.pixel_accuracy(torch.tensor([0, 1, 0]), torch.tensor([0, 0, 1]), ignore_index=0, num_classes=2) == 0.0
