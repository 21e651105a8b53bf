"""Smoke tests of the benchmarks: each main() runs on a tiny configuration, and its checks bite.

The benchmarks themselves are not part of the test suite (``testpaths = ["tests"]``); these tests
only make sure they still run, that their baseline and the course code agree, and that a wrong
"fast" version is caught before anything is timed.
"""

from __future__ import annotations

import json

import nbformat
import pytest
import torch

from benchmarks import bench_metrics, bench_notebooks, bench_train_step
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
