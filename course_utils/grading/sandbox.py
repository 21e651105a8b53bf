"""Step 2 of grading: run one graded copy where it cannot touch the course or other submissions.

At the start of a class run, ``Course.snapshot`` reads the reference notebooks and the
``course_utils`` package into memory, with their hashes. Each submission then runs in a new
temporary folder holding a copy of both, written from that snapshot (never from the live
checkout, which a student may have changed):

    <tmp>/course/course_utils/        the package the kernel imports (first on PYTHONPATH)
    <tmp>/course/notebooks/           the reference notebooks; the kernel's working directory
    <tmp>/course/{data,results,checkpoints}   COURSE_DATA, COURSE_RESULTS, COURSE_CHECKPOINTS
    <tmp>/home/                       HOME (caches, matplotlib, IPython)
    <tmp>/job/                        the graded copy and the kernelspec (the worker's)

The worker (``worker.py``, the kernel's parent) runs in a new session; on Linux, in its own PID,
network and mount namespaces (``unshare``): the kernel has no network, every process the student
starts, detached or not, dies with the worker, and ``kernel.py`` makes every file outside the
submission's folder read-only for it (the checkout, Python, the result files, other
submissions). The kernel's memory is capped
(``RLIMIT_AS``), each cell's time and the whole submission's time are capped, and the worker's
process group is killed afterwards. After each submission the live reference notebooks are hashed
again: a change is reported (later submissions use the snapshot anyway). The package is not:
the course's authors may edit it while a class is graded, and the snapshot makes that harmless.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

PACKAGE = Path(__file__).resolve().parents[1]  # the live course_utils


@dataclass
class Limits:
    """What one submission may use."""

    cell_seconds: int = 120
    submission_seconds: int = 900
    memory_bytes: int = 6 << 30
    profile: str | None = "ci"


@dataclass
class Course:
    """The references and the package as they were when grading started: ``{relative path: bytes}``."""

    reference_dir: Path
    files: dict[str, bytes]
    hashes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def snapshot(cls, reference_dir: Path, package: Path = PACKAGE) -> "Course":
        reference_dir = Path(reference_dir)
        files = {f"notebooks/{p.name}": p.read_bytes() for p in sorted(reference_dir.glob("*.ipynb"))}
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files[f"course_utils/{path.relative_to(package).as_posix()}"] = path.read_bytes()
        course = cls(reference_dir, files)
        course.hashes = course.live_hashes()
        return course

    def live_path(self, key: str) -> Path:
        """Where a reference notebook of the snapshot lives on disk (``notebooks/NAME``)."""
        return self.reference_dir / key.split("/", 1)[1]

    def live_hashes(self) -> dict[str, str]:
        """The hashes of the live reference notebooks now ("" for a file that is gone)."""
        def digest(path: Path) -> str:
            try:
                return hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                return ""
        return {key: digest(self.live_path(key)) for key in self.files if key.startswith("notebooks/")}

    def changed(self) -> list[str]:
        """The live references that differ from the last check (recorded, so each is told once)."""
        now = self.live_hashes()
        changed = [str(self.live_path(key)) for key in now if now[key] != self.hashes[key]]
        self.hashes = now
        return changed

    def reference_names(self) -> list[str]:
        return [key.split("/", 1)[1] for key in self.files if key.startswith("notebooks/")]

    def reference(self, name: str) -> NotebookNode:
        return nbformat.reads(self.files[f"notebooks/{name}"].decode("utf-8"), as_version=4)

    def write(self, root: Path) -> None:
        for key, data in self.files.items():
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


@functools.cache
def isolation() -> list[str]:
    """The command prefix this machine allows (``[]``: none).

    ``unshare``: PID, network and mount namespaces; ``setpriv --pdeathsig KILL``: the submission
    dies with the grader, even when the grader is killed outright (util-linux, both).
    """
    if sys.platform != "linux" or not shutil.which("unshare"):
        return []
    namespaces = ["--mount", "--net", "--pid", "--fork", "--kill-child"]
    for prefix in (["unshare", *namespaces], ["unshare", "--user", "--map-root-user", *namespaces]):
        for guard in (["setpriv", "--pdeathsig", "KILL"], []):
            try:
                if subprocess.run(guard + prefix + ["true"], capture_output=True, timeout=30).returncode == 0:
                    return guard + prefix
            except (OSError, subprocess.SubprocessError):
                pass
    return []


_RUNNING: set[int] = set()  # process groups of the workers running now (killed on Ctrl-C)
_LOCK = threading.Lock()


def kill_all() -> None:
    """Kill every running worker with its namespace (the grader was interrupted)."""
    with _LOCK:
        for pgid in list(_RUNNING):
            _killpg(pgid)


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _environment(tmp: Path, limits: Limits, mounts: bool) -> dict[str, str]:
    from course_utils.grading.kernel import namespace

    env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSE_", "JUPYTER_", "PYTHON"))}
    course, home = tmp / "course", tmp / "home"
    env.update(PYTHONPATH=str(course), HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
               MPLCONFIGDIR=str(home / ".matplotlib"), IPYTHONDIR=str(home / ".ipython"),
               JUPYTER_RUNTIME_DIR=str(tmp / "job" / "runtime"), PYTHONNOUSERSITE="1",
               COURSE_DATA=str(course / "data"), COURSE_RESULTS=str(course / "results"),
               COURSE_CHECKPOINTS=str(course / "checkpoints"), COURSE_GRADE_MEMORY=str(limits.memory_bytes),
               COURSE_GRADE_WRITABLE=str(tmp) if mounts else "", COURSE_GRADE_HOST_NAMESPACES=f"{namespace('net')} {namespace('mnt')}",
               TMPDIR=str(tmp / "tmp"),
               MPLBACKEND="agg")
    env.setdefault("OMP_NUM_THREADS", "1")  # ci models are tiny; parallel jobs share the cores
    if limits.profile:
        env["COURSE_PROFILE"] = limits.profile
    return env


def _prepare(tmp: Path, course: Course, graded: NotebookNode) -> dict:
    """Lay out the submission's folder (module docstring); returns the worker's job."""
    course.write(tmp / "course")
    for name in ("notebooks", "data", "results", "checkpoints"):
        (tmp / "course" / name).mkdir(parents=True, exist_ok=True)
    (tmp / "home").mkdir()
    (tmp / "tmp").mkdir()
    job = tmp / "job"
    (job / "runtime").mkdir(parents=True)
    (job / "ipc").mkdir()
    kernels = job / "kernels" / "graded"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "course_utils.grading.kernel", "-f", "{connection_file}"],
        "display_name": "graded", "language": "python"}))
    nbformat.write(graded, job / "graded.ipynb")
    return {"notebook": str(job / "graded.ipynb"), "cwd": str(tmp / "course" / "notebooks"),
            "kernels": str(job / "kernels"), "ipc": str(job / "ipc" / "kernel")}


def run(graded: NotebookNode, course: Course, limits: Limits) -> tuple[list[dict], str]:
    """Run a graded copy in a new folder; returns (one record per code cell, as ``worker`` makes
    them, and why the run stopped early or ""). The folder's random name, which a cell may print
    (in an error message, say), is replaced by ``<grading folder>``: grades do not vary between runs."""
    prefix = isolation()
    nonce = secrets.token_hex(16)
    tmp = Path(tempfile.mkdtemp(prefix="course-grade-"))
    try:
        job = _prepare(tmp, course, graded)
        job.update(cell_timeout=limits.cell_seconds, nonce=nonce)
        command = prefix + [sys.executable, "-m", "course_utils.grading.worker"]
        env = _environment(tmp, limits, mounts="--mount" in prefix)
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env, cwd=tmp / "job", text=True,
                                   start_new_session=True)
        with _LOCK:
            _RUNNING.add(process.pid)
        stopped = ""
        try:
            output, log = process.communicate(json.dumps(job) + "\n", timeout=limits.submission_seconds)
        except subprocess.TimeoutExpired:
            _killpg(process.pid)
            output, log = process.communicate()
            stopped = f"not run: the submission was stopped after {limits.submission_seconds} s (its time limit)"
        finally:
            _killpg(process.pid)
            with _LOCK:
                _RUNNING.discard(process.pid)
        messages = [json.loads(line[len(nonce):]) for line in output.splitlines() if line.startswith(nonce)]
        for message in messages:
            if "kernel_pid" in message and "--pid" not in prefix:  # no PID namespace: kill its group too
                _killpg(message["kernel_pid"])
        cells = [m["cell"] for m in messages if "cell" in m]
        error = next((m["error"] for m in messages if "error" in m), "")
        if not stopped and error:
            stopped = f"not run: {error}"
        elif not stopped and not any("done" in m for m in messages):
            last = next((line.strip() for line in reversed(log.splitlines()) if line.strip()), "")
            stopped = f"not run: the grading process ended early (exit status {process.returncode}) {last}"[:300]
        cells = json.loads(json.dumps(cells).replace(str(tmp), "<grading folder>"))
        return cells, stopped
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
