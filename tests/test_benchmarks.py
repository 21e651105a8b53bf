"""Smoke tests of the benchmarks: each main() runs on a tiny configuration, and its checks bite.

The benchmarks themselves are not part of the test suite (``testpaths = ["tests"]``); these tests
only make sure they still run, that their baseline and the course code agree, and that a wrong
"fast" version is caught before anything is timed.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import nbformat
import pytest
import torch

from benchmarks import bench_cifar_recipe, bench_faults, bench_metrics, bench_notebooks, bench_quick_real, bench_train_step
from course_utils import engine

TINY_TRAIN = ["--width-div", "8", "--image-size", "32", "--steps", "2", "--batch-size", "2", "--repeats", "1",
              "--devices", "cpu", "--threads", "1"]  # one thread: tiny models, and a shared machine


@pytest.fixture
def restore_threads():
    """``--threads`` sets torch's thread count for the whole process: put it back afterwards."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_bench_metrics_runs_on_small_masks(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_metrics, "N", 2)  # 2 masks of 32x32 instead of 16 of 256x256
    monkeypatch.setattr(bench_metrics, "SIZE", 32)
    report = bench_metrics.main(["--repeats", "1", "--json", str(tmp_path / "metrics.json")])
    assert [r["task"] for r in report["results"]] == ["colour masks", "confusion + mIoU", "confusion + mIoU",
                                                      "pixel accuracy"]
    assert all(r["ratio"] > 0 for r in report["results"])
    assert json.loads((tmp_path / "metrics.json").read_text())["benchmark"] == "bench_metrics"


def test_bench_train_step_runs_and_both_loops_agree(tmp_path, restore_threads):
    out = tmp_path / "train.json"
    report = bench_train_step.main(["--models", "vgg16,unet", *TINY_TRAIN, "--json", str(out)])
    rows = report["results"]
    assert [(r["device"], r["model"]) for r in rows] == [("cpu", "vgg16"), ("cpu", "unet")]
    for row in rows:
        assert row["textbook_img_s"] > 0 and row["engine_img_s"] > 0
        assert row["ratio"] == pytest.approx(row["engine_img_s"] / row["textbook_img_s"])
        assert row["goal"] == bench_train_step.CPU_GOAL and row["steps"] == 2 and row["batch_size"] == 2
        assert len(row["seconds"]["engine"]) == len(row["seconds"]["textbook"]) == 1
    assert json.loads(out.read_text())["threads"] == 1


def test_bench_train_step_catches_a_loop_that_trains_differently(tmp_path, monkeypatch, restore_threads):
    real = engine.train_one_epoch

    def skips_last_batch(model, loader, *args, **kwargs):  # a "faster" loop that drops work
        return real(model, list(loader)[:-1], *args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", skips_last_batch)
    with pytest.raises(AssertionError):
        bench_train_step.main(["--models", "vgg16", *TINY_TRAIN, "--json", str(tmp_path / "t.json")])


def test_bench_train_step_rejects_unknown_models(tmp_path):
    with pytest.raises(SystemExit):
        bench_train_step.main(["--models", "alexnet", "--json", str(tmp_path / "t.json")])


def _notebook(path, answer: str) -> None:
    """Two cells; the check cell's stored answer is ``answer`` (the cell prints "2")."""
    check = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(x)", execution_count=1)
    check.outputs = [nbformat.v4.new_output("stream", name="stdout", text=answer)]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1 + 1"), check])
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}
    nbformat.write(nb, str(path))


def test_bench_notebooks_times_each_notebook_and_reports_failures(tmp_path):
    _notebook(tmp_path / "good.ipynb", "2\n")
    _notebook(tmp_path / "bad.ipynb", "3\n")  # a stale answer: nbval must fail this cell
    report = bench_notebooks.main(["--paths", str(tmp_path / "bad.ipynb"), str(tmp_path / "good.ipynb"),
                                   "--json", str(tmp_path / "nb.json")])
    assert not report["passed"]
    assert set(report["notebooks"]) == {"good.ipynb", "bad.ipynb"}
    assert report["notebooks"]["good.ipynb"]["cells"] == 2 and report["notebooks"]["good.ipynb"]["failed"] == 0
    assert report["notebooks"]["bad.ipynb"]["failed"] == 1
    assert 0 < report["notebooks"]["good.ipynb"]["seconds"] < report["suite_seconds"]
    assert json.loads((tmp_path / "nb.json").read_text())["goal_seconds"] == 300


TINY_RECIPE = ["--width-div", "8", "--train-size", "64", "--test-size", "32", "--batch-size", "16",
               "--device", "cpu"]


def test_bench_cifar_recipe_projects_from_the_timed_epochs(tmp_path, restore_threads):
    torch.set_num_threads(1)
    out = tmp_path / "recipe.json"
    report = bench_cifar_recipe.main(["--models", "vgg16,resnet50", *TINY_RECIPE, "--epochs", "30",
                                      "--timed-epochs", "3", "--json", str(out)])
    rows = report["results"]
    assert [r["model"] for r in rows] == ["vgg16", "resnet50"]
    for r in rows:
        assert r["epochs_run"] == 3 and len(r["epoch_seconds"]) == 3 and r["train_images"] == 64
        first, *rest = r["epoch_seconds"]
        assert r["total_minutes"] * 60 == pytest.approx(first + 29 * statistics.median(rest))
        assert r["total_is_projection"] and r["accuracy"] is None  # synthetic: no accuracy claim
        assert r["train_img_s"] > 0 and r["eval_s"] > 0 and r["amp"] == "None"  # no autocast on a CPU
    assert json.loads(out.read_text())["benchmark"] == "bench_cifar_recipe"


def test_projection_uses_the_median_of_the_later_epochs():
    assert bench_cifar_recipe.projected_seconds([10.0, 2.0, 3.0, 100.0], 30) == pytest.approx(10 + 29 * 3.0)
    assert bench_cifar_recipe.projected_seconds([4.0], 30) == pytest.approx(4.0 * 30)


def test_bench_cifar_recipe_uses_the_lessons_schedule(tmp_path, monkeypatch, restore_threads):
    """The scheduler is planned for all --epochs (its warm-up is 30 % of them), not the timed ones."""
    torch.set_num_threads(1)
    seen = {}
    real = bench_cifar_recipe.recipe

    def spy(model, batch_size, total_steps):
        seen["total_steps"] = total_steps
        optimizer, scheduler, criterion = real(model, batch_size, total_steps)
        seen["criterion"], seen["group"] = criterion, optimizer.param_groups[0]
        return optimizer, scheduler, criterion

    monkeypatch.setattr(bench_cifar_recipe, "recipe", spy)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)  # restored afterwards
    report = bench_cifar_recipe.main(["--models", "vgg16", *TINY_RECIPE, "--epochs", "30", "--timed-epochs", "1",
                                      "--cudnn-benchmark", "--json", str(tmp_path / "r.json")])
    assert report["cudnn_benchmark"] and torch.backends.cudnn.benchmark
    assert seen["total_steps"] == 30 * (64 // 16)
    assert seen["criterion"].label_smoothing == 0.1
    group = seen["group"]
    assert (group["nesterov"], group["weight_decay"], group["max_lr"]) == (True, 5e-4, pytest.approx(0.1 / 8 ** 0.5))


@pytest.mark.parametrize("lesson", ["01_vgg16_cifar10.ipynb", "02_resnet50_cifar10.ipynb"])
def test_the_recipe_benchmark_times_what_the_lessons_run(lesson):
    """If a lesson's full-profile recipe changes, the benchmark must change with it."""
    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / lesson, as_version=4)
    source = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    r = bench_cifar_recipe
    assert f'full={{"epochs": {r.EPOCHS}, "batch_size": {r.BATCH_SIZE}}}' in source
    assert (r.MOMENTUM, r.WEIGHT_DECAY) == (0.9, 5e-4)
    assert "momentum=0.9, nesterov=True, weight_decay=5e-4" in source
    assert "OneCycleLR(optimizer, max_lr=max_lr" in source
    assert f"label_smoothing={r.LABEL_SMOOTHING}" in source
    assert "cifar.loaders(profile, device=device)" in source  # the data stays on the GPU
    assert "amp=profile.amp" in source  # evaluation under the same autocast


def test_bench_cifar_recipe_rejects_unknown_models(tmp_path):
    with pytest.raises(SystemExit):
        bench_cifar_recipe.main(["--models", "alexnet", "--json", str(tmp_path / "r.json")])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without a GPU")
def test_gpu_check_says_it_needs_a_gpu(tmp_path):
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable})
    assert done.returncode == 2 and "no CUDA GPU" in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was run or written


def test_bench_faults_survives_a_kill_in_a_save(tmp_path):
    """One run killed (SIGKILL) in a slowed-down save, then re-run: nothing lost, the same result.
    Two short training processes (a few seconds, most of it importing torch)."""
    out = tmp_path / "faults.json"
    report = bench_faults.main(["--kills", "1", "--kinds", "save", "--concurrent", "0", "--epochs", "3",
                                "--json", str(out)])
    counts = report["counts"]
    assert counts["kills"] + counts["runs finished before their kill"] == 1
    assert counts["checkpoints lost"] == counts["checkpoints unreadable"] == counts["re-runs that failed"] == 0
    assert counts["results equal to the uninterrupted run"] == 1
    assert counts["temporary or lock files left at the end"] == 0
    assert json.loads(out.read_text())["benchmark"] == "bench_faults"


def test_bench_faults_comparison_tells_results_apart():
    weights = {"w": torch.zeros(3)}
    history = {"train_loss": [0.5, 0.25]}
    assert bench_faults.same((weights, history), ({"w": torch.zeros(3)}, {"train_loss": [0.5, 0.25]}))
    assert not bench_faults.same((weights, history), ({"w": torch.tensor([0.0, 0.0, 1e-7])}, history))
    assert not bench_faults.same((weights, history), (weights, {"train_loss": [0.5, 0.26]}))


@pytest.mark.parametrize("number", sorted(bench_quick_real.LESSONS))
def test_every_quick_promise_is_a_measurement_or_says_it_is_not(number):
    """Issue 14: the quick row of each header states measured figures, no '(est.)' projection."""
    notebook = nbformat.read(Path(bench_quick_real.ROOT, "notebooks", bench_quick_real.LESSONS[number]), as_version=4)
    promise = bench_quick_real.promise(notebook)
    assert promise != "(no quick row in the header)"
    assert "est." not in promise and "estimate" not in promise and "projection" not in promise
    assert ("not measured" in promise) == (number in bench_quick_real.VOC_LESSONS), promise
    if number not in bench_quick_real.VOC_LESSONS:
        assert promise.count("measured:") == 2, promise  # the time and the result


def test_bench_quick_real_finds_the_results_a_lesson_prints():
    text = ("epoch 6/6 | train loss 1.296 acc 0.524 | val loss 1.205 acc 0.554 | lr 6.48e-07 | 29.5s\n"
            "test accuracy: 55.5% on 2,000 images (chance: 10%)\n"
            "without augmentation: train 64.5%, validation 54.7%, gap +9.8% | 258 training img/s\n")
    found = [m.group(0) for pattern in bench_quick_real.RESULT_PATTERNS for m in re.finditer(pattern, text)]
    assert found[0].startswith("epoch 6/6 | train loss 1.296") and "test accuracy: 55.5%" in found
    assert "without augmentation: train 64.5%, validation 54.7%" in found
