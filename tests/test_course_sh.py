"""tools/course.sh, the README's install-and-run command, driven with fake programs.

Its functions are sourced (``source tools/course.sh`` defines them and runs nothing); ``main`` runs
against a fake venv whose ``bin/python`` logs what it is asked to do, so nothing is installed.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "course.sh"
UNREACHABLE = "http://127.0.0.1:9/whl/cpu"  # port 9 (discard): refused at once
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

FAKE_PYTHON = """#!/bin/sh
# A venv's python that logs every call; `-c` answers as a venv with pip and torch+$FAKE_BUILD.
echo "python $*" >> "$FAKE_LOG"
case "$1" in
  -c) case "$2" in *torch.__version__*) echo "$FAKE_BUILD" ;; esac ;;
  -m) [ "$2" = pytest ] || [ "$2" = jupyterlab ] && echo "OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}" >> "$FAKE_LOG" ;;
esac
exit 0
"""


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def fake(tmp_path):
    """A fake installed venv (stamp newer than pyproject.toml), a log, and a PATH without nvidia-smi."""
    venv = tmp_path / "venv"
    executable(venv / "bin" / "python", FAKE_PYTHON)
    (venv / "pyvenv.cfg").write_text("home = /nowhere\n")
    (venv / ".course-installed").touch()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))  # a real interpreter, not a shim
    for tool in ("grep", "dirname", "id", "rm", "touch", "mkdir", "chmod", "uname"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "COURSE_VENV": str(venv),
           "FAKE_LOG": str(tmp_path / "log"), "FAKE_BUILD": "cu130", "COURSE_CPU_INDEX": UNREACHABLE}
    return type("Fake", (), {"venv": venv, "bin": bin_dir, "env": env, "log": tmp_path / "log",
                             "calls": lambda self: (tmp_path / "log").read_text() if (tmp_path / "log").exists() else ""})()


def bash(code: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    """``code`` after ``source tools/course.sh`` (functions only), in the repository root."""
    return subprocess.run([shutil.which("bash"), "-c", f'source "{SCRIPT}"\n{code}'], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def course(args: list[str], env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("bash"), str(SCRIPT), *args], cwd="/", env=env,
                          capture_output=True, text=True, timeout=timeout)


# Which PyTorch build a first install takes ----------------------------------------------------------

def test_without_gpu_and_unreachable_cpu_index_falls_back_to_the_default_in_one_line(fake):
    run = bash("PYTHON=python3; choose_torch_index", fake.env)
    assert run.returncode == 0 and run.stdout == "\n"
    assert run.stderr.count("\n") == 1 and "does not answer: installing pip's default build" in run.stderr


def test_without_gpu_the_cpu_index_is_chosen_when_it_answers(fake, tmp_path):
    (tmp_path / "index" / "cpu" / "torch").mkdir(parents=True)
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "index"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = f"http://127.0.0.1:{server.server_address[1]}/cpu"
        run = bash("PYTHON=python3; choose_torch_index", fake.env | {"COURSE_CPU_INDEX": index})
    finally:
        server.shutdown()
    assert run.stdout == index + "\n"
    assert "no NVIDIA GPU: installing PyTorch's CPU-only build" in run.stderr


def test_with_an_nvidia_gpu_the_default_build_is_kept(fake):
    executable(fake.bin / "nvidia-smi", '#!/bin/sh\necho "GPU 0: NVIDIA T4 (UUID: GPU-1)"\n')
    run = bash("PYTHON=python3; choose_torch_index", fake.env)
    assert run.stdout == "\n" and "NVIDIA GPU found" in run.stderr


def test_a_broken_nvidia_smi_counts_as_no_gpu(fake):
    executable(fake.bin / "nvidia-smi", "#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    run = bash("PYTHON=python3; choose_torch_index", fake.env)
    assert "no NVIDIA GPU" in run.stderr


def test_on_macos_the_default_build_is_taken_without_asking_the_cpu_index(fake):
    (fake.bin / "uname").unlink()
    executable(fake.bin / "uname", "#!/bin/sh\necho Darwin\n")
    run = bash("PYTHON=python3; choose_torch_index", fake.env)
    assert run.stdout == "\n" and "macOS: installing PyTorch's default build" in run.stderr


def test_installed_build_reads_torch_version_not_pip_metadata(tmp_path):
    """A CUDA wheel's pip metadata may say 2.14.1 while torch.__version__ says 2.14.1+cu130."""
    site = tmp_path / "site"
    (site / "torch").mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text('__version__ = "2.14.1+cu130"\n')
    (site / "torch-2.14.1.dist-info").mkdir()
    (site / "torch-2.14.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.14.1\n")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(site)}
    run = bash(f'PY="{os.path.realpath(sys.executable)}"; installed_build', env)
    assert run.stdout == "cu130\n", run.stderr


def test_torch_index_url_wins(fake):
    run = bash("PYTHON=python3; choose_torch_index", fake.env | {"TORCH_INDEX_URL": "https://example.org/whl/cu130"})
    assert run.stdout == "https://example.org/whl/cu130\n"


# An existing venv ------------------------------------------------------------------------------------

def test_torch_index_url_on_an_existing_cuda_venv_reinstalls_the_cpu_build(fake):
    cpu = "https://download.pytorch.org/whl/cpu"
    run = course(["run", "00"], fake.env | {"TORCH_INDEX_URL": cpu})
    assert run.returncode == 0, run.stderr
    assert (f"python -m pip install -q -c constraints.txt --force-reinstall --no-deps --index-url {cpu} "
            "torch torchvision") in fake.calls()
    assert "has torch cu130; reinstalling torch and torchvision" in run.stderr


def test_an_existing_venv_with_the_right_build_is_left_alone(fake):
    env = fake.env | {"TORCH_INDEX_URL": "https://download.pytorch.org/whl/cpu", "FAKE_BUILD": "cpu"}
    assert course(["run", "00"], env).returncode == 0
    assert "pip install" not in fake.calls()
    assert course(["run", "00"], fake.env).returncode == 0  # no TORCH_INDEX_URL: nothing to change
    assert "pip install" not in fake.calls()


def test_a_half_made_venv_is_removed_and_the_fix_is_named(fake, tmp_path):
    # `python3 -m venv` without python3-venv (Debian) leaves a venv with no pip; so does this fake.
    half_maker = executable(tmp_path / "half-python", f"""#!/bin/sh
mkdir -p "$3/bin"; echo "home = /x" > "$3/pyvenv.cfg"
printf '#!/bin/sh\\nexit 1\\n' > "$3/bin/python"; chmod +x "$3/bin/python"
echo "The virtual environment was not created successfully because ensurepip is not available." >&2
exit 1
""")
    fake.venv.joinpath("bin", "python").write_text("#!/bin/sh\nexit 1\n")  # an earlier half-made venv
    run = bash("main lab", fake.env | {"PYTHON": str(half_maker)})
    assert run.returncode == 1
    assert "half-made virtual environment" in run.stderr and "sudo apt install python3-venv" in run.stderr
    assert not fake.venv.exists(), "the half-made venv must not be left for the next run to reuse"


def test_a_folder_that_is_not_a_venv_is_never_removed(fake, tmp_path):
    folder = tmp_path / "mine"
    (folder / "notes.txt").parent.mkdir()
    (folder / "notes.txt").write_text("keep")
    run = bash("main lab", fake.env | {"COURSE_VENV": str(folder)})
    assert run.returncode == 1 and "is not a virtual environment" in run.stderr
    assert (folder / "notes.txt").read_text() == "keep"


# Commands ---------------------------------------------------------------------------------------------

def test_run_executes_only_the_lessons_named_without_a_cell_time_limit(fake):
    run = course(["run", "1", "notebooks/00_setup.ipynb", "-x"], fake.env)
    assert run.returncode == 0, run.stderr
    (call,) = [line for line in fake.calls().splitlines() if "-m pytest" in line]
    assert call.endswith("--nbval-cell-timeout=86400 notebooks/01_vgg16_cifar10.ipynb notebooks/00_setup.ipynb -x")
    assert "OMP_NUM_THREADS=unset" in fake.calls()  # quick/full: torch's own thread count


def test_run_passes_an_option_s_number_to_pytest_not_as_a_lesson(fake):
    run = course(["run", "01", "--maxfail", "2"], fake.env)
    assert run.returncode == 0, run.stderr
    (call,) = [line for line in fake.calls().splitlines() if "-m pytest" in line]
    assert call.endswith("notebooks/01_vgg16_cifar10.ipynb --maxfail 2")


def test_run_without_lessons_runs_every_solution_and_ci_uses_one_thread(fake):
    assert course(["run"], fake.env | {"COURSE_PROFILE": "ci"}).returncode == 0
    (call,) = [line for line in fake.calls().splitlines() if "-m pytest" in line]
    assert call.endswith("notebooks --ignore=notebooks/student") and "OMP_NUM_THREADS=1" in fake.calls()


def test_run_of_a_lesson_that_does_not_exist_says_which_exist(fake):
    run = course(["run", "42"], fake.env)
    assert run.returncode == 2 and "no lesson 42" in run.stderr and "00_setup.ipynb" in run.stderr
    assert "-m pytest" not in fake.calls()


@pytest.mark.parametrize("uid, allowed", [("0", True), ("1000", False)])
def test_lab_passes_allow_root_only_as_root(fake, uid, allowed):
    (fake.bin / "id").unlink()
    executable(fake.bin / "id", f"#!/bin/sh\necho {uid}\n")
    assert course(["lab"], fake.env).returncode == 0
    (call,) = [line for line in fake.calls().splitlines() if "-m jupyterlab" in line]
    assert ("--allow-root" in call) == allowed


def test_unknown_command_prints_usage(fake):
    run = course(["frobnicate"], fake.env)
    assert run.returncode == 2 and "usage: bash tools/course.sh lab|test|run" in run.stderr
