"""Preflight: each check reports ok on a good machine and a PROBLEM with its fix on a bad one."""

import pickle
import sys

import pytest
import torch

from course_utils import preflight, runtime


@pytest.fixture
def quick():
    return runtime.default_profile("quick")


def test_versions_in_range_pass_here():
    findings = preflight.check_versions()
    assert [f.name for f in findings] == ["torch", "torchvision", "torch/torchvision pair"]
    assert all(f.ok for f in findings), findings


def test_version_outside_tested_range_is_a_problem(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.9.0+cpu")
    torch_finding = preflight.check_versions()[0]
    assert not torch_finding.ok
    assert "constraints.txt" in torch_finding.fix


def test_tested_ranges_come_from_package_metadata():
    assert preflight.tested_ranges()["torch"] in ("<2.15,>=2.11", ">=2.11,<2.15")


def test_missing_datasets_say_how_to_get_them(tmp_path, capsys, quick):
    problems = preflight.run(quick, data_root=tmp_path)
    names = {p.name for p in problems}
    assert {"CIFAR-10", "VOC 2012"} <= names
    out = capsys.readouterr().out
    assert "PROBLEM CIFAR-10" in out and "cifar.download()" in out
    assert "voc.download()" in out


def test_in_ci_missing_real_datasets_are_shown_but_not_counted(tmp_path, capsys):
    problems = preflight.run(runtime.default_profile("ci"), data_root=tmp_path)
    assert not {"CIFAR-10", "VOC 2012"} & {p.name for p in problems}
    out = capsys.readouterr().out
    assert "PROBLEM CIFAR-10" in out and "missing real datasets are fine here" in out


def test_cifar_checksums_are_verified(tmp_path):
    from torchvision.datasets import CIFAR10

    folder = tmp_path / CIFAR10.base_folder
    folder.mkdir()
    for name, _ in CIFAR10.train_list + CIFAR10.test_list + [[CIFAR10.meta["filename"], None]]:
        (folder / name).write_bytes(pickle.dumps({"not": "cifar"}))
    finding = preflight.check_cifar10(tmp_path)
    assert not finding.ok and "corrupt" in finding.detail


def test_a_local_cifar_copy_is_checked_against_its_own_checksums(tmp_path, synthetic_cifar_root):
    """The course's real sample (or any copy with its own checksums.md5) is fine, not 'corrupt'."""
    import shutil

    from course_utils.data import cifar

    shutil.copytree(synthetic_cifar_root / cifar.FOLDER, tmp_path / cifar.FOLDER)
    finding = preflight.check_cifar10(tmp_path)
    assert finding.ok and "its own checksums.md5" in finding.detail
    (tmp_path / cifar.FOLDER / "data_batch_2").write_bytes(b"damaged")
    finding = preflight.check_cifar10(tmp_path)
    assert not finding.ok and "data_batch_2 (md5 mismatch)" in finding.detail and "delete" not in finding.fix


def test_incomplete_voc_is_a_problem(tmp_path, synthetic_voc_root):
    finding = preflight.check_voc2012(synthetic_voc_root)  # a tiny tree, not the 1,464 + 1,449 images
    assert not finding.ok and "incomplete" in finding.detail


def test_duplicate_openmp_runtimes_are_a_problem(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f0 r-xp 0 0 0 /venv/torch/lib/libgomp-a34b3233.so.1\n"
                    "7f1 r-xp 0 0 0 /usr/lib/libgomp.so.1\n")
    assert preflight.check_openmp(maps).ok  # two copies of one runtime family
    maps.write_text(maps.read_text() + "7f2 r-xp 0 0 0 /opt/conda/lib/libiomp5.so\n")
    finding = preflight.check_openmp(maps)
    assert not finding.ok and "libiomp5" in finding.detail and "libgomp" in finding.detail


def test_colab_without_gpu_tells_how_to_switch(monkeypatch, quick):
    import sys

    monkeypatch.setitem(sys.modules, "google.colab", object())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    finding = preflight.check_device(quick)
    assert not finding.ok and "Change runtime type" in finding.fix


@pytest.fixture
def ci():
    return runtime.default_profile("ci")


def _data_folder_problem(ci, capsys) -> str:
    """Run preflight in ci (where missing real datasets are fine) and return its data folder lines."""
    problems = preflight.run(ci)
    out = capsys.readouterr().out
    assert "data folder" in {p.name for p in problems}  # counted, even in ci
    assert "All checks passed" not in out
    start = out.index("PROBLEM data folder")
    return out[start:out.index("\n", out.index("fix:", start))]


def test_course_data_that_is_a_file_is_a_problem_with_its_fix(monkeypatch, tmp_path, capsys, ci):
    archive = tmp_path / "data.zip"
    archive.write_bytes(b"PK")
    monkeypatch.setenv(runtime.DATA_ENV, str(archive))
    lines = _data_folder_problem(ci, capsys)
    assert f"COURSE_DATA points at {archive}, which is a file" in lines and "fix: Set COURSE_DATA" in lines


def test_course_data_that_cannot_be_written_is_a_problem_with_its_fix(monkeypatch, tmp_path, capsys, ci):
    monkeypatch.setattr(runtime, "writable", lambda folder: folder != tmp_path)  # tests may run as root
    monkeypatch.setenv(runtime.DATA_ENV, str(tmp_path))
    lines = _data_folder_problem(ci, capsys)
    assert "a folder you cannot write to" in lines and "you can write to" in lines


def test_a_windows_course_data_on_linux_is_a_problem_not_a_crash(monkeypatch, capsys, ci):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv(runtime.DATA_ENV, "C:\\Users\\me\\course_data")
    lines = _data_folder_problem(ci, capsys)
    assert "is a Windows path" in lines and "/mnt/c/" in lines


def test_a_writable_data_folder_is_ok(monkeypatch, tmp_path):
    monkeypatch.setenv(runtime.DATA_ENV, str(tmp_path / "course_data"))  # created when needed
    finding = preflight.check_data_folder()
    assert finding.ok and str(tmp_path / "course_data") in finding.detail
