"""Tests for course_utils.runtime: profile choice, banner, folders, seeds, workers, the Colab hint."""

import dataclasses
import os
import platform
import random
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from course_utils import runtime


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No course variables (CI sets COURSE_PROFILE=ci), no GPU, Linux, not in Colab."""
    for name in (runtime.PROFILE_ENV, runtime.DATA_ENV, runtime.CHECKPOINT_ENV, runtime.RESULTS_ENV):
        monkeypatch.delenv(name, raising=False)
    set_devices(monkeypatch, cuda=False, mps=False)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)


def set_devices(monkeypatch, cuda: bool, mps: bool = False):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


def test_auto_profile_is_quick_on_cpu(capsys):
    assert runtime.get_profile().name == "quick"


def test_auto_profile_is_full_when_cuda_is_reported(monkeypatch, capsys):
    set_devices(monkeypatch, cuda=True)
    assert runtime.pick_device().type == "cuda"
    assert runtime.get_profile().name == "full"


def test_auto_profile_is_quick_on_mps_but_uses_mps(monkeypatch, capsys):
    set_devices(monkeypatch, cuda=False, mps=True)
    assert runtime.pick_device().type == "mps"
    assert runtime.get_profile().name == "quick"


@pytest.mark.parametrize("value, expected", [("ci", "ci"), ("full", "full"), (" Quick ", "quick")])
def test_course_profile_overrides_automatic_choice(monkeypatch, capsys, value, expected):
    set_devices(monkeypatch, cuda=True)  # automatic would say full
    monkeypatch.setenv(runtime.PROFILE_ENV, value)
    assert runtime.get_profile().name == expected


def test_name_argument_overrides_course_profile(monkeypatch, capsys):
    monkeypatch.setenv(runtime.PROFILE_ENV, "ci")
    assert runtime.get_profile("quick").name == "quick"


@pytest.mark.parametrize("how", ["env", "argument"])
def test_unknown_profile_raises_naming_valid_ones(monkeypatch, how):
    if how == "env":
        monkeypatch.setenv(runtime.PROFILE_ENV, "fast")
    with pytest.raises(ValueError, match="fast") as error:
        runtime.get_profile("fast" if how == "argument" else None, verbose=False)
    assert all(name in str(error.value) for name in ("full", "quick", "ci"))


def test_profiles_are_frozen_and_ci_is_synthetic():
    ci = runtime.default_profile("ci")
    assert ci.synthetic and ci.width_div > 1 and ci.num_workers == 0
    assert not runtime.default_profile("quick").synthetic
    with pytest.raises(dataclasses.FrozenInstanceError):
        ci.epochs = 100


def test_banner_says_profile_device_data_and_versions(capsys):
    runtime.get_profile("quick")
    line = capsys.readouterr().out.strip()
    assert "\n" not in line  # one line
    for part in ("Profile: quick", "device: cpu", f"real datasets under {runtime.data_root()}",
                 f"torch {torch.__version__}", f"torchvision {torchvision.__version__}",
                 f"Python {platform.python_version()}"):
        assert part in line


def test_banner_says_synthetic_for_ci_and_cuda_device(monkeypatch):
    set_devices(monkeypatch, cuda=True)
    line = runtime.banner(runtime.default_profile("ci"))
    assert "Profile: ci" in line and "device: cuda" in line and "synthetic" in line


def test_get_profile_quiet_prints_nothing(capsys):
    runtime.get_profile("quick", verbose=False)
    assert capsys.readouterr().out == ""


def test_adjustments_apply_only_to_their_profile():
    adjust = {"quick": {"epochs": 3, "train_subset": 64}, "ci": {"batch_size": 4}}
    quick = runtime.get_profile("quick", verbose=False, **adjust)
    assert (quick.epochs, quick.train_subset, quick.batch_size) == (3, 64, 32)
    ci = runtime.get_profile("ci", verbose=False, **adjust)
    assert (ci.epochs, ci.batch_size) == (runtime.default_profile("ci").epochs, 4)
    full = runtime.get_profile("full", verbose=False, **adjust)
    assert full == runtime.default_profile("full")


def test_adjustment_with_unknown_field_raises():
    with pytest.raises(ValueError, match="epoch"):
        runtime.get_profile("quick", verbose=False, quick={"epoch": 3})


def test_adjustment_for_unknown_profile_raises():
    with pytest.raises(ValueError, match="fast"):
        runtime.get_profile("quick", verbose=False, fast={"epochs": 3})


def test_adjustment_with_unknown_field_raises_in_every_profile():
    with pytest.raises(ValueError, match="epoch"):
        runtime.get_profile("ci", verbose=False, quick={"epoch": 3})


def test_data_root_honours_course_data(monkeypatch, tmp_path):
    monkeypatch.setenv(runtime.DATA_ENV, str(tmp_path / "datasets"))
    assert runtime.data_root() == tmp_path / "datasets"


def test_data_root_is_never_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # nbval runs notebooks with notebooks/ as working directory
    root = runtime.data_root()
    assert root.is_absolute() and root != Path.cwd()
    assert root == Path(runtime.__file__).resolve().parents[1] / "data"


def test_checkpoint_dir_ends_in_profile_name(monkeypatch, tmp_path):
    quick, ci = runtime.default_profile("quick"), runtime.default_profile("ci")
    assert runtime.checkpoint_dir(quick).name == "quick"
    assert runtime.checkpoint_dir(ci) != runtime.checkpoint_dir(quick)  # ci never satisfies quick
    assert runtime.checkpoint_dir(ci).is_absolute()
    monkeypatch.setenv(runtime.CHECKPOINT_ENV, str(tmp_path))
    assert runtime.checkpoint_dir(ci) == tmp_path / "ci"


def draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seed_everything_repeats_python_numpy_and_torch():
    runtime.seed_everything(123)
    first = draws()
    runtime.seed_everything(123)
    assert draws() == first
    runtime.seed_everything(124)
    assert all(a != b for a, b in zip(draws(), first))


@pytest.fixture
def restore_determinism():
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.backends.cudnn.benchmark = before[2]


def test_seed_everything_leaves_deterministic_mode_alone_by_default(restore_determinism):
    torch.use_deterministic_algorithms(False)
    runtime.seed_everything(0)
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("cuda, warn_only", [(False, False), (True, True)])
def test_seed_everything_deterministic_warns_only_on_cuda(monkeypatch, restore_determinism, cuda, warn_only):
    set_devices(monkeypatch, cuda=cuda)
    runtime.seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled() == warn_only


@pytest.mark.parametrize("platform_name", ["win32", "darwin"])
@pytest.mark.parametrize("name", ["full", "quick", "ci"])
def test_num_workers_is_zero_on_windows_and_macos(monkeypatch, platform_name, name):
    monkeypatch.setattr(sys, "platform", platform_name)
    assert runtime.default_profile(name).num_workers == 0


def test_num_workers_on_linux(monkeypatch):
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 8)
    assert runtime.default_profile("ci").num_workers == 0
    assert runtime.default_profile("quick").num_workers == 2
    assert runtime.default_profile("full").num_workers == 4
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 1)
    assert runtime.default_profile("full").num_workers == 0  # leave the only core to the main process


def test_colab_without_gpu_prints_runtime_hint(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    runtime.get_profile()
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Profile: quick")
    assert "GPU" in lines[1] and "Change runtime type" in lines[1]


def test_colab_with_gpu_prints_no_hint(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    set_devices(monkeypatch, cuda=True)
    runtime.get_profile()
    assert len(capsys.readouterr().out.strip().splitlines()) == 1


def test_no_hint_for_quick_on_a_laptop_but_warning_for_full_on_cpu(capsys):
    runtime.get_profile("quick")
    assert len(capsys.readouterr().out.strip().splitlines()) == 1
    runtime.get_profile("full")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "COURSE_PROFILE=quick" in lines[1]


def test_relative_course_data_is_taken_from_the_repository_root(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # nbval runs kernels in notebooks/: the cwd must not matter
    monkeypatch.setenv("COURSE_DATA", "my_data")
    monkeypatch.setenv("COURSE_CHECKPOINTS", "my_ckpts")
    root = runtime.repo_root()
    assert runtime.data_root() == root / "my_data"
    assert runtime.checkpoint_dir(runtime.default_profile("ci")) == root / "my_ckpts" / "ci"


def test_results_dir_is_made_per_lesson_and_profile_and_follows_course_results(monkeypatch, tmp_path):
    quick = runtime.default_profile("quick")
    monkeypatch.setenv(runtime.RESULTS_ENV, str(tmp_path / "kept"))
    path = runtime.results_dir(quick, "04_unet")
    assert path == tmp_path / "kept" / "04_unet" / "quick" and path.is_dir()
    monkeypatch.setenv(runtime.CHECKPOINT_ENV, str(tmp_path / "elsewhere"))  # results do not follow checkpoints
    assert runtime.results_dir(quick, "04_unet") == path


def test_results_and_checkpoints_default_to_the_checkout_or_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(runtime.RESULTS_ENV, raising=False)
    monkeypatch.delenv(runtime.CHECKPOINT_ENV, raising=False)
    ci = runtime.default_profile("ci")
    monkeypatch.setattr(runtime, "repo_root", lambda: tmp_path / "repo")
    assert runtime.results_dir(ci, "04_unet") == tmp_path / "repo" / "results" / "04_unet" / "ci"
    assert runtime.checkpoint_dir(ci) == tmp_path / "repo" / "checkpoints" / "ci"
    monkeypatch.setattr(runtime, "repo_root", lambda: None)  # pip-installed, e.g. in Colab
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert runtime.results_dir(ci, "06_x") == tmp_path / "home" / "course_data" / "results" / "06_x" / "ci"


def test_keep_checkpoints_on_drive_mounts_and_points_the_course_there(monkeypatch, tmp_path, capsys):
    mounted = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mounted.append)
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(runtime, "DRIVE_MOUNT", tmp_path / "drive")
    monkeypatch.setenv(runtime.CHECKPOINT_ENV, str(tmp_path / "before"))  # both restored after the test
    monkeypatch.setenv(runtime.RESULTS_ENV, str(tmp_path / "before"))
    path = runtime.keep_checkpoints_on_drive()
    assert mounted == [str(tmp_path / "drive")]
    assert path == tmp_path / "drive" / "MyDrive" / "course" / "checkpoints" and path.is_dir()
    assert runtime.checkpoint_dir(runtime.default_profile("full")) == path / "full"
    assert runtime.results_dir(runtime.default_profile("full"), "04_unet") == path.parent / "results" / "04_unet" / "full"
    assert str(path) in capsys.readouterr().out


def test_keep_checkpoints_on_drive_outside_colab_says_what_to_do(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    with pytest.raises(RuntimeError, match="Colab only.*COURSE_CHECKPOINTS"):
        runtime.keep_checkpoints_on_drive()


# ------------------------------------------------------------------ folders that cannot work
@pytest.mark.parametrize("value", ["C:\\Users\\me\\course", "D:/course", "c:", "\\\\server\\share\\course"])
@pytest.mark.parametrize("variable, folder_of", [
    (runtime.DATA_ENV, lambda: runtime.data_root()),
    (runtime.CHECKPOINT_ENV, lambda: runtime.checkpoint_dir(runtime.default_profile("ci"))),
    (runtime.RESULTS_ENV, lambda: runtime.results_dir(runtime.default_profile("ci"), "04_unet")),
])
def test_a_windows_path_on_linux_is_refused(monkeypatch, tmp_path, variable, folder_of, value):
    monkeypatch.setattr(runtime, "repo_root", lambda: tmp_path)  # where it would land, unrefused
    monkeypatch.setenv(variable, value)
    with pytest.raises(runtime.FolderError, match="is a Windows path, but this system is not Windows") as error:
        folder_of()
    assert variable in str(error.value) and "/mnt/c/" in str(error.value)
    assert not list(tmp_path.iterdir())  # no folder named "C:\Users\..." inside the checkout


def test_course_data_that_is_a_file_says_so(monkeypatch, tmp_path):
    archive = tmp_path / "data.zip"
    archive.write_bytes(b"PK")
    monkeypatch.setenv(runtime.DATA_ENV, str(archive))
    with pytest.raises(runtime.FolderError, match="which is a file, not a folder") as error:
        runtime.data_root()
    assert f"COURSE_DATA points at {archive}" in str(error.value) and "~/course_data" in str(error.value)
    with pytest.raises(runtime.FolderError, match="is a file"):
        runtime.dataset_root(None)  # what every dataset function calls
    monkeypatch.setenv(runtime.DATA_ENV, str(archive / "datasets"))
    with pytest.raises(runtime.FolderError, match=f"but {archive} is a file"):
        runtime.data_root()
    assert runtime.data_root(check=False) == archive / "datasets"  # for messages and preflight


def test_course_data_that_cannot_be_written_says_so(monkeypatch, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setattr(runtime, "writable", lambda folder: folder != shared)  # tests may run as root
    monkeypatch.setenv(runtime.DATA_ENV, str(shared))
    with pytest.raises(runtime.FolderError, match="a folder you cannot write to") as error:
        runtime.data_root()
    assert str(shared) in str(error.value) and "you can write to" in str(error.value)
    monkeypatch.setenv(runtime.DATA_ENV, str(shared / "course"))
    with pytest.raises(runtime.FolderError, match=f"cannot be created \\({shared} is not writable\\)"):
        runtime.data_root()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_course_data_folder_is_refused(monkeypatch, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o555)
    try:
        monkeypatch.setenv(runtime.DATA_ENV, str(shared))
        with pytest.raises(runtime.FolderError, match="cannot write"):
            runtime.data_root()
    finally:
        shared.chmod(0o755)


def test_banner_does_not_fail_on_a_broken_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(runtime.DATA_ENV, "C:\\Users\\me\\data")  # preflight reports it, with the fix
    assert "is a Windows path" in runtime.banner(runtime.default_profile("quick"))


def test_banner_puts_a_broken_checkpoint_folder_under_checkpoints_not_data(monkeypatch, tmp_path):
    monkeypatch.setenv(runtime.DATA_ENV, str(tmp_path))
    monkeypatch.setenv(runtime.CHECKPOINT_ENV, "C:\\x")
    parts = runtime.banner(runtime.default_profile("quick")).split(" | ")
    data = next(p for p in parts if p.startswith("data: "))
    assert "Windows" not in data and str(tmp_path) in data
    assert any(p.startswith("checkpoints and results: ") and "Windows path" in p for p in parts)


def test_a_read_only_folder_that_holds_datasets_is_read(monkeypatch, tmp_path):
    """A lab's shared, read-only copy of the datasets: the lessons only read it."""
    shared = tmp_path / "shared"
    (shared / "cifar-10-batches-py").mkdir(parents=True)
    monkeypatch.setattr(runtime, "writable", lambda folder: folder != shared)  # tests may run as root
    monkeypatch.setenv(runtime.DATA_ENV, str(shared))
    assert runtime.data_root() == shared
    from course_utils import preflight

    finding = preflight.check_data_folder()
    assert finding.ok and "read-only" in finding.detail


def test_a_results_folder_under_a_file_says_what_to_do(monkeypatch, tmp_path):
    archive = tmp_path / "results.zip"
    archive.write_bytes(b"PK")
    monkeypatch.setenv(runtime.RESULTS_ENV, str(archive))
    with pytest.raises(runtime.FolderError, match="Cannot create the results folder") as error:
        runtime.results_dir(runtime.default_profile("ci"), "06_custom_dataset")
    assert str(archive) in str(error.value) and "COURSE_RESULTS" in str(error.value)


# ------------------------------------------------------------------ where files go without a checkout
def test_without_a_checkout_the_three_folders_sit_in_course_data(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime, "repo_root", lambda: None)  # pip-installed
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = tmp_path / "home" / "course_data"
    ci = runtime.default_profile("ci")
    assert runtime.data_root() == home / "data"
    assert runtime.checkpoint_dir(ci) == home / "checkpoints" / "ci"
    assert runtime.results_dir(ci, "04_unet") == home / "results" / "04_unet" / "ci"


def test_in_colab_files_go_where_the_files_pane_shows_them_and_the_banner_says_they_vanish(monkeypatch, tmp_path,
                                                                                          capsys):
    monkeypatch.setattr(runtime, "repo_root", lambda: None)  # Colab: pip-installed
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(runtime, "COLAB_HOME", tmp_path / "content" / "course_data")
    quick = runtime.get_profile("quick")
    out = capsys.readouterr().out
    home = tmp_path / "content" / "course_data"
    assert runtime.data_root() == home / "data" and runtime.checkpoint_dir(quick) == home / "checkpoints" / "quick"
    assert f"checkpoints: {home / 'checkpoints' / 'quick'}" in out and f"results: {home / 'results'}" in out
    assert "vanish when the runtime disconnects" in out and "keep_checkpoints_on_drive()" in out
    monkeypatch.setenv(runtime.CHECKPOINT_ENV, str(tmp_path / "drive"))  # on Drive: no warning
    runtime.get_profile("quick")
    assert "vanish" not in capsys.readouterr().out


def test_banner_names_the_checkpoint_and_results_folders(monkeypatch, tmp_path):
    monkeypatch.setenv(runtime.CHECKPOINT_ENV, str(tmp_path / "ckpt"))
    monkeypatch.setenv(runtime.RESULTS_ENV, str(tmp_path / "res"))
    line = runtime.banner(runtime.default_profile("ci"))
    assert f"checkpoints: {tmp_path / 'ckpt' / 'ci'}" in line and f"results: {tmp_path / 'res' / '<lesson>' / 'ci'}" in line
    assert f"under {runtime.data_root(check=False)}" in line and "\n" not in line
