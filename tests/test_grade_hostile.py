"""course_utils.grade against hostile submissions (issue 19, point 2): one submission never
changes another's grade, the course files, the result files, or stops the batch.

Each hostile notebook is the toy lesson answered right, with one attack cell before Question 1
that sets ``attack`` to 1 when the attack worked; ``add`` returns ``a + b + attack``. So a
hostile submission scores 5/5 exactly when the grader stopped its attack. Toy kernels import no
torch: the class runs in about half a minute on two busy cores. Linux only (namespaces).
"""

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import nbformat
import pytest

import nb_helpers as nbh
from course_utils import grade, release

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the grader's isolation uses Linux namespaces")


def _namespaces() -> bool:
    from course_utils.grading import sandbox
    return bool(sandbox.isolation())


# Where Linux refuses namespaces (a non-root container, Ubuntu's AppArmor rule for user namespaces)
# the grader says so and the README lists what is then open: these attacks would work.
needs_namespaces = pytest.mark.skipif(sys.platform == "linux" and not _namespaces(),
                                      reason="this Linux refuses the namespaces the grader's isolation needs")

REPO = Path(grade.__file__).resolve().parents[1]

ATTACKS = {
    # Writes the reference notebook, new files in the checkout and its package, the --json file.
    "tamper": '''import pathlib, course_utils
attack = 0
for target in [{reference!r}, {sentinel!r}, {patch!r}, {json!r}]:
    try:
        pathlib.Path(target).write_text("tampered")
        attack = 1
    except OSError:
        pass
pathlib.Path(course_utils.__file__).with_name("patched.py").write_text("")  # its own copy: allowed''',
    # A detached process that outlives the submission and then writes outside it.
    "detach": '''import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time, pathlib; time.sleep(4); "
                  "pathlib.Path({late!r}).write_text('late')"], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
attack = 0''',
    # SIGINT and SIGTERM to every ancestor, up to the grader's command line.
    "signals": '''import os, signal
attack, pid = 0, os.getppid()
while pid > 0:
    try:
        command = open(f"/proc/{{pid}}/cmdline", "rb").read()
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
        pid = 0 if b"course_utils.grade\\0" in command else int(open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        break''',
    # 16 GB of address space (mmap touches no page: harmless where it is allowed).
    "memory": '''import mmap
try:
    mmap.mmap(-1, 16 << 30).close()
    attack = 1
except (OSError, MemoryError, OverflowError):
    attack = 0''',
    # The network: a server on the grader's loopback.
    "network": '''import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
    attack = 1
except OSError:
    attack = 0''',
    # Course folders and package: the submission's own, inside its folder.
    "folders": '''import os, course_utils
root = os.path.dirname(os.getcwd())
attack = int(not (course_utils.__file__.startswith(root) and all(
    os.environ.get(name, "").startswith(root) for name in ("COURSE_DATA", "COURSE_RESULTS", "COURSE_CHECKPOINTS"))))''',
}


def answered(student: nbformat.NotebookNode, attack: str = "") -> nbformat.NotebookNode:
    """The toy student copy answered right; with ``attack``, that cell goes before Question 1."""
    nb = nbformat.from_dict(student)
    nbh.answer(nb, "add", "return a + b + attack" if attack else "return a + b")
    nbh.answer(nb, "scale", "out.append(k * x)")
    nbh.answer(nb, "greet", 'return f"hello {name}"')
    nbh.answer(nb, "square", "return x * x")
    if attack:
        nb.cells.insert(nb.cells.index(nbh.cell(nb, "q1")), nbh.code("attack", attack))
    return nb


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def server():
    """A TCP server on the loopback, accepting forever: reachable from any kernel that has a network."""
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=lambda: [listener.accept()[0].close() for _ in iter(int, 1)], daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture(scope="module")
def attacked(tmp_path_factory, server):
    """A class where each attack is followed by an honest student, graded by the CLI (2 jobs)."""
    root = tmp_path_factory.mktemp("hostile")
    notebooks, subs, out = root / "notebooks", root / "submissions", root / "out"
    reference = nbh.write(nbh.light_solution(), notebooks / "01_toy.ipynb")
    student = release.release_notebook(nbh.light_solution())
    sentinel = REPO / f".grade-test-{uuid.uuid4().hex}"
    patch = REPO / "course_utils" / f"grade_test_{uuid.uuid4().hex}.py"
    values = dict(reference=str(reference), sentinel=str(sentinel), patch=str(patch), json=str(out / "grades.json"),
                  late=str(root / "late.txt"), port=server)
    for name, attack in ATTACKS.items():
        nbh.write(answered(student, attack.format(**values)), subs / f"01_toy_{name}.ipynb")
        nbh.write(answered(student), subs / f"01_toy_{name}_honest.ipynb")
    before = digest(reference)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "course_utils.grade", str(subs), "--reference", str(notebooks), "--timeout", "20",
             "--memory-gb", "3", "--jobs", "2", "--json", str(out / "grades.json"), "--csv", str(out / "grades.csv")],
            capture_output=True, text=True, timeout=300)
        time.sleep(5)  # the detached process would have written by now
        yield run, root, before, digest(reference), sentinel.exists() or patch.exists()
    finally:
        sentinel.unlink(missing_ok=True)
        patch.unlink(missing_ok=True)


def test_the_batch_finishes_and_records_everyone(attacked):
    run, root, *_ = attacked
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((root / "out" / "grades.json").read_text())
    assert len(results) == 2 * len(ATTACKS)
    assert len((root / "out" / "grades.csv").read_text().splitlines()) == 2 * len(ATTACKS) + 1


@needs_namespaces
@pytest.mark.parametrize("name", ATTACKS)
def test_each_attack_fails_and_the_next_student_is_graded_right(attacked, name):
    run, root, *_ = attacked
    results = {Path(r["submission"]).name: r for r in json.loads((root / "out" / "grades.json").read_text())}
    hostile, honest = results[f"01_toy_{name}.ipynb"], results[f"01_toy_{name}_honest.ipynb"]
    assert (honest["score"], honest["total"]) == (nbh.TOTAL_POINTS, nbh.TOTAL_POINTS), honest
    assert hostile["score"] == nbh.TOTAL_POINTS, hostile  # Question 1 passes only if attack == 0


@needs_namespaces
def test_course_files_and_checkout_are_unchanged(attacked):
    _, root, before, after, checkout_written = attacked
    assert after == before
    assert not checkout_written
    assert not (root / "late.txt").exists()  # the detached process died with its submission
    assert json.loads((root / "out" / "grades.json").read_text())  # written by the grader only


def toy_submission(tmp_path: Path, cells: dict[str, str]) -> tuple[Path, Path]:
    """The toy lesson answered right, with extra cells inserted before the given headings."""
    solution = nbh.write(nbh.light_solution(), tmp_path / "notebooks" / "01_toy.ipynb")
    nb = answered(release.release_notebook(nbh.light_solution()))
    for before, source in cells.items():
        nb.cells.insert(nb.cells.index(nbh.cell(nb, before)), nbh.code(f"extra-{before}", source))
    return nbh.write(nb, tmp_path / "sub" / "01_toy.ipynb"), solution.parent


def test_a_dead_kernel_is_noticed_at_once(tmp_path):
    submission, notebooks = toy_submission(tmp_path, {"q4": "import os; os._exit(1)"})
    start = time.monotonic()
    result = grade.grade(submission, notebooks, timeout=60)
    assert time.monotonic() - start < 40  # the old grader waited for the 60 s cell timeout
    # A new kernel reruns the cells before the crash and goes on without it: the later question,
    # answered right, keeps its points (the old grader zeroed everything after the crash).
    assert [q.passed for q in result.questions] == [True, True, True, True]
    died = [c for c in result.failed_cells if c["source"] == "import os; os._exit(1)"]
    assert died[0]["reason"] == "the kernel died in this cell (os._exit, a crash, or out of memory?)"


def test_a_cell_deaf_to_interrupts_is_stopped(tmp_path):
    """It ignores SIGINT and prints forever: stopped after its cell time and the probe."""
    deaf = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    print('x' * 100)"
    submission, notebooks = toy_submission(tmp_path, {"q3": deaf})
    start = time.monotonic()
    result = grade.grade(submission, notebooks, timeout=3)
    assert time.monotonic() - start < 60
    assert [q.passed for q in result.questions] == [True, True, True, True]  # a new kernel went on without it
    stuck = [c for c in result.failed_cells if c["source"] == "import signal"]
    assert stuck[0]["reason"] == ("Timeout of 3 seconds exceeded executing cell; it ignored the interrupt, "
                                  "so the kernel was stopped")


def test_a_submission_has_a_time_cap(tmp_path):
    from course_utils.grading import sandbox
    slow = "import time\ntime.sleep(3)"
    submission, notebooks = toy_submission(tmp_path, {"q2": slow, "q3": slow, "q4": slow})
    limits = sandbox.Limits(cell_seconds=10, submission_seconds=7)
    start = time.monotonic()
    result = grade.grade(submission, notebooks, limits=limits)
    assert time.monotonic() - start < 30
    assert result.questions[0].passed and not result.questions[3].passed
    assert result.questions[3].reason == "not run: the submission was stopped after 7 s (its time limit)"


def descendants(pid: int) -> set[int]:
    """The processes below ``pid`` now (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            pass
    found, todo = set(), [pid]
    while todo:
        pid = todo.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found.update(children)
        todo += children
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (not zombies)."""
    running = set()
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                running.add(pid)
        except OSError:
            pass
    return running


@needs_namespaces
@pytest.mark.parametrize("stop", ["interrupt", "kill"])
def test_a_stopped_grader_leaves_no_submission_running(tmp_path, stop):
    """Ctrl-C keeps what was graded; even SIGKILL of the grader takes its submissions with it."""
    import signal
    fast, notebooks = toy_submission(tmp_path, {})
    slow, _ = toy_submission(tmp_path / "slow", {"q1": "import time\ntime.sleep(120)"})
    out = tmp_path / "grades.json"
    folders = set()  # the submission's temporary folder (a killed grader cannot remove it)
    run = subprocess.Popen([sys.executable, "-m", "course_utils.grade", str(fast), str(slow), "--reference",
                            str(notebooks), "--jobs", "1", "--json", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and len(json.loads(out.read_text() or "[]")) == 1):
            assert time.monotonic() < deadline and run.poll() is None, "the first submission was not graded"
            time.sleep(0.5)
        time.sleep(3)  # the slow one is in its sleep
        below = descendants(run.pid)
        assert alive(below), "no submission running"
        for pid in below:
            with contextlib.suppress(OSError):
                folders |= {p for p in Path(os.readlink(f"/proc/{pid}/cwd")).parents if p.name.startswith("course-grade-")}
        run.send_signal(signal.SIGINT if stop == "interrupt" else signal.SIGKILL)
        _, err = run.communicate(timeout=30)
        if stop == "interrupt":
            assert run.returncode == 130 and "interrupted: 1 of 2 submissions graded" in err
        time.sleep(2)
        assert alive(below) == set()
        assert [Path(r["submission"]).name for r in json.loads(out.read_text())] == ["01_toy.ipynb"]
    finally:
        run.kill()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def test_a_submission_has_a_loopback_of_its_own(tmp_path):
    """No network, but local servers work (lesson 08's torchrun), reachable only from inside."""
    from course_utils.grading import sandbox
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import socket\nserver = socket.create_server(('127.0.0.1', 0))\n"
        "socket.create_connection(server.getsockname(), timeout=5).close()\nprint('loopback works')")]
    (tmp_path / "notebooks").mkdir()
    records, stopped = sandbox.run(nb, sandbox.Course.snapshot(tmp_path / "notebooks"), sandbox.Limits(cell_seconds=30))
    assert (stopped, records[0]["status"]) == ("", "ok"), records
    assert [o["text"] for o in records[0]["outputs"]] == ["loopback works\n"]


def test_after_a_restart_a_timed_out_cell_is_rerun_not_its_probe(tmp_path):
    """The cells before a kernel death are rerun on a new kernel, the one that timed out too (what it
    did before its limit is needed later); nbclient had left the 'pass' probe in its place."""
    from course_utils.grading import worker
    kernels = tmp_path / "kernels" / "graded"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "graded", "language": "python"}))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in (
        "x = 1", "y = 5\nimport time\nwhile True:\n    time.sleep(0.1)", "import os; os._exit(1)", "print(x + y)")])
    nbformat.write(nb, tmp_path / "graded.ipynb")
    (tmp_path / "ipc").mkdir()
    job = {"notebook": str(tmp_path / "graded.ipynb"), "cwd": str(tmp_path), "kernels": str(tmp_path / "kernels"),
           "ipc": str(tmp_path / "ipc" / "kernel"), "cell_timeout": 3}
    records = []
    worker.run(job, records.append)
    cells = [r["cell"] for r in records if "cell" in r]
    assert [c["status"] for c in cells] == ["ok", "timeout", "died", "ok"]
    assert cells[3]["outputs"][0]["text"] == "6\n"
