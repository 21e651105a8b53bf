"""measure: multiply-adds counted exactly, steps timed for real, memory reported."""

import pytest
import torch
from torch import nn

from course_utils import measure


def test_count_macs_of_a_conv_is_exact():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    assert measure.count_macs(conv, (1, 3, 10, 10)) == 8 * 10 * 10 * 3 * 3 * 3


def test_count_macs_adds_layers_and_scales_with_batch():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 2))
    assert measure.count_macs(model, (1, 3, 2, 2)) == 12 * 5 + 5 * 2
    assert measure.count_macs(model, (4, 3, 2, 2)) == 4 * (12 * 5 + 5 * 2)


def test_count_macs_restores_training_mode():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout())
    model.train()
    measure.count_macs(model, (1, 4))
    assert model.training


def test_vgg16_macs_match_the_known_figure():
    from course_utils.models import vgg

    assert round(measure.count_macs(vgg.vgg16(), (1, 3, 32, 32)) / 1e6) == 313  # ~0.31 GMACs at 32x32


def test_time_step_trains_and_times():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    before = [p.detach().clone() for p in model.parameters()]
    timing = measure.time_step(model, (4, 3, 8, 8), "cpu", steps=2, warmup=1)
    assert timing.seconds > 0 and timing.images_per_second > 0
    assert abs(timing.images_per_second * timing.seconds - 4) < 1e-6
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), "no optimizer step ran"


def test_time_forward_only_leaves_weights_alone():
    model = nn.Sequential(nn.Conv2d(3, 2, 1))
    before = [p.detach().clone() for p in model.parameters()]
    measure.time_step(model, (2, 3, 4, 4), "cpu", train=False, steps=2, warmup=0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_segmentation_step_uses_mask_targets():
    model = nn.Conv2d(3, 5, 1)
    timing = measure.time_step(model, (2, 3, 6, 6), "cpu", num_classes=5, target_shape=(2, 6, 6), steps=1, warmup=0)
    assert timing.seconds > 0


def test_peak_memory_on_cpu_is_the_process_rss():
    assert 10 < measure.peak_memory_mib("cpu") < 1e6


def test_measure_imports_without_the_resource_module(monkeypatch):
    """Windows has no ``resource``: importing measure must work, and CPU peak memory is NaN."""
    import importlib
    import math
    import sys

    import course_utils

    monkeypatch.setitem(sys.modules, "resource", None)  # `import resource` now raises ImportError
    monkeypatch.delitem(sys.modules, "course_utils.measure")
    monkeypatch.setattr(course_utils, "measure", measure)  # put the tested module back afterwards
    fresh = importlib.import_module("course_utils.measure")
    assert math.isnan(fresh.peak_memory_mib("cpu"))
    assert f"{fresh.peak_memory_mib('cpu'):7.0f}" == "    nan"  # lesson 07's format still prints


def bn_model():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))


@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
@pytest.mark.parametrize("train", [True, False])
def test_time_step_keeps_the_models_mode(mode, train):
    model = bn_model().train(mode != "eval")
    if mode == "mixed":
        model[1].eval()  # e.g. a frozen BatchNorm inside a training model
    before = [m.training for m in model.modules()]
    measure.time_step(model, (2, 3, 6, 6), "cpu", train=train, steps=1, warmup=0)
    assert [m.training for m in model.modules()] == before


def test_time_step_probe_leaves_batchnorm_statistics_alone():
    model = bn_model().train()
    measure.time_step(model, (2, 3, 6, 6), "cpu", steps=1, warmup=0)  # num_classes asked of the model
    assert int(model[1].num_batches_tracked) == 1  # the one timed training step, not the probe


def test_loader_speed_times_the_batches_after_the_first(monkeypatch):
    """Lesson 03's loading rate: the first batch (worker start-up) is not timed, the next ones are."""
    batches = [(torch.zeros(4, 3, 2, 2), torch.zeros(4)) for _ in range(3)]
    clock = iter([10.0, 12.0])  # start, end: 2 s for the 2 timed batches of 4 images
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(clock))
    assert measure.loader_speed(batches, batches=2) == pytest.approx(8 / 2.0)
    clock = iter([0.0, 0.5, 1.0, 1.5])  # a single batch: timed on its own, start-up included
    assert measure.loader_speed(batches[:1]) == pytest.approx(4 / 0.5)
