"""course_utils.grade: graded copies, score tables, usage errors (toy notebooks).

Each graded submission costs a kernel start, so a single CLI call (module fixture) grades
the submissions folder every kernel test reads: the solution (under a name pytest refuses), the
released student copy, a tampered answer sheet, a misnamed file and a file with a broken cell.
"""

import json
import subprocess
import sys

import nbformat
import pytest

import nb_helpers as nbh
from pathlib import Path

from course_utils import grade, release
from course_utils.grading import sandbox


def tampered(student: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A student copy with: Q1 wrong; Q2 wrong with its check cell and stored answer edited to
    match; Q3 right with its check cell deleted; Q4 wrong with its check cell deleted; and a
    crashing non-check cell."""
    nb = nbformat.from_dict(student)
    nbh.answer(nb, "add", "return a - b")
    nbh.answer(nb, "scale", "out.append(k + x)")  # scale([1, 2], 3) == [4, 5], lengths still right
    check = nbh.cell(nb, "check-scale")
    check.source = check.source.replace("[3, 6]", "[4, 5]")
    check.outputs = [nbh.stdout("PASS scale([1, 2], 3) [4, 5]\n")]
    nbh.answer(nb, "greet", 'return f"hello {name}"')
    nbh.answer(nb, "square", "return x + x")
    nbh.delete(nb, "check-greet")
    nbh.delete(nb, "check-square")
    nb.cells.insert(10, nbh.code("crash", 'raise RuntimeError("training crashed")'))  # after "train"
    return nb


def with_null_source(student: nbformat.NotebookNode) -> str:
    """The JSON text of a student copy whose ``add`` cell has ``"source": null``."""
    nb = json.loads(nbformat.writes(student))
    next(c for c in nb["cells"] if c["id"] == "add")["source"] = None
    return json.dumps(nb)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """notebooks/01_toy.ipynb (reference), its student copy, and submissions/."""
    root = tmp_path_factory.mktemp("course")
    notebooks, subs = root / "notebooks", root / "submissions"
    solution = nbh.write(nbh.toy_solution(), notebooks / "01_toy.ipynb")
    # Only ada imports the real course_utils.checks: the others use a torch-free stand-in (fast).
    student = release.release_notebook(nbh.light_solution())
    nbh.write(nbformat.read(solution, as_version=4), subs / "ada" / "01_toy_Élodie[final].ipynb")  # [] and ::
    nbh.write(student, subs / "ada" / ".ipynb_checkpoints" / "01_toy-checkpoint.ipynb")  # Jupyter's: skipped
    nbh.write(nbformat.read(solution, as_version=4), subs / "ada_lab0.ipynb")  # no lesson number
    (subs / "01_toy_odd.ipynb").write_text(with_null_source(student))
    nbh.write(student, subs / "01_toy_blank.ipynb")
    nbh.write(tampered(student), subs / "bob_01_toy.ipynb")
    return root


@pytest.fixture(scope="module")
def graded(course):
    """Run the CLI once on the submissions folder; returns (process, {file name: result})."""
    out = course / "out"  # not there yet: the CLI makes it
    run = subprocess.run(
        [sys.executable, "-m", "course_utils.grade", str(course / "submissions"), "--reference",
         str(course / "notebooks"), "--timeout", "60", "--json", str(out / "grades.json"),
         "--csv", str(out / "grades.csv")],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((out / "grades.json").read_text())
    return run, {result["submission"].split("submissions/")[1]: result for result in results}


ADA = "ada/01_toy_Élodie[final].ipynb"


def scores(result: dict) -> dict:
    return {q["number"]: q["score"] for q in result["questions"]}


def test_solution_notebook_scores_full_marks(graded):
    run, results = graded
    ada = results[ADA]  # its name has [] in it, which pytest refuses: the graded copy has a safe name
    assert (ada["score"], ada["total"]) == (nbh.TOTAL_POINTS, nbh.TOTAL_POINTS)
    assert ada["failed_cells"] == []
    assert "Total: 5 / 5" in run.stdout


def test_student_copy_fails_exactly_the_check_cells_of_its_questions(graded):
    blank = graded[1]["01_toy_blank.ipynb"]
    assert blank["score"] == 0
    assert all(q["reason"].endswith("raised NotImplementedError") for q in blank["questions"])
    failed = [cell["question"] for cell in blank["failed_cells"]]
    assert sorted(failed) == ["1", "2", "2", "3", "4"]  # every check cell, nothing else


def test_wrong_answer_loses_only_its_question(graded):
    bob = graded[1]["bob_01_toy.ipynb"]
    assert scores(bob) == {"1": 0, "2": 0, "3": 1, "4": 0}
    assert bob["questions"][0]["reason"] == "FAIL got add(2, 3) -1 expected add(2, 3) 5"


def test_edited_answer_is_graded_against_the_reference(graded):
    q2 = graded[1]["bob_01_toy.ipynb"]["questions"][1]
    assert q2["score"] == 0  # its second check cell passes: a question needs all of them
    assert q2["reason"] == "check 1 of 2: FAIL got scale([1, 2], 3) [4, 5] expected scale([1, 2], 3) [3, 6]"
    assert q2["notes"] == ["check cell edited, reference used"]


def test_deleted_check_cells_are_restored_and_graded(graded):
    bob = graded[1]["bob_01_toy.ipynb"]["questions"]
    assert (bob[2]["passed"], bob[2]["notes"]) == (True, ["check cell deleted, restored"])
    assert (bob[3]["passed"], bob[3]["reason"]) == (False, "FAIL got square(7) 14 expected square(7) 49")


def test_crashing_non_check_cell_fails_no_question(graded):
    failed = graded[1]["bob_01_toy.ipynb"]["failed_cells"]
    assert [(c["question"], c["reason"]) for c in failed if c["question"] is None] == \
        [(None, "raised RuntimeError: training crashed")]


def test_failed_cells_are_located_in_the_submitted_file(graded):
    run, results = graded
    failed = {c["reason"]: c for c in results["bob_01_toy.ipynb"]["failed_cells"]}
    crash = failed["raised RuntimeError: training crashed"]
    assert (crash["cell"], crash["source"]) == (10, 'raise RuntimeError("training crashed")')  # 0-based, all cells
    assert failed["FAIL got add(2, 3) -1 expected add(2, 3) 5"]["cell"] == 5
    assert failed["FAIL got square(7) 14 expected square(7) 49"]["cell"] is None  # deleted, restored
    assert ("Total: 1 / 5\n  cell 10 (0-based) `raise RuntimeError(\"training crashed\")`: raised RuntimeError: "
            "training crashed; later questions may be affected") in run.stdout


def test_folders_are_searched_recursively_and_misnamed_files_reported(graded):
    run, results = graded
    assert sorted(results) == ["01_toy_blank.ipynb", "01_toy_odd.ipynb", ADA, "ada_lab0.ipynb", "bob_01_toy.ipynb"]
    lab = results["ada_lab0.ipynb"]
    assert (lab["score"], lab["total"], lab["reference"], lab["questions"]) == (0, 0, "", [])
    assert lab["error"] == ("not graded: ada_lab0.ipynb has no lesson number: rename it like its lesson "
                            "(NN_topic.ipynb, e.g. 00_setup.ipynb) or pass --lesson NN.")
    assert f"ada_lab0.ipynb  (reference: none)\n  {lab['error']}\nTotal: 0 / 0  (not graded)" in run.stdout


def test_cell_without_source_scores_zero_and_the_batch_goes_on(graded):
    odd = graded[1]["01_toy_odd.ipynb"]
    assert (odd["score"], odd["total"]) == (0, nbh.TOTAL_POINTS)
    assert odd["error"] == "not graded: ValueError: cell 4 has no source text (source: None)"
    assert all(q["reason"] == odd["error"] for q in odd["questions"])


def test_json_scores_are_floats(graded):
    for result in graded[1].values():
        assert all(type(x) is float for x in [result["score"], result["total"]]
                   + [q["score"] for q in result["questions"]]), result


def test_cli_prints_a_table_per_submission_and_a_csv_summary(graded, course):
    run, _ = graded
    assert run.stdout.count("Question 1   add     ") == 4  # not the misnamed file's
    assert "  Question 2   scale   0/2  FAIL  check 1 of 2: FAIL got" in run.stdout
    assert "Total: 0 / 5" in run.stdout and "Total: 1 / 5" in run.stdout
    rows = (course / "out" / "grades.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "submission,score,total,Q1,Q2,Q3,Q4,error"
    cells = {row.split(",")[0].split("submissions/")[1]: row.split(",")[1:7] for row in rows[1:]}
    assert cells == {"01_toy_blank.ipynb": ["0", "5", "0", "0", "0", "0"],
                     "01_toy_odd.ipynb": ["0", "5", "0", "0", "0", "0"],
                     ADA: ["5", "5", "1", "2", "1", "1"],
                     "ada_lab0.ipynb": ["0", "0", "", "", "", ""],
                     "bob_01_toy.ipynb": ["1", "5", "0", "0", "1", "0"]}


def test_parallel_and_repeated_runs_give_the_same_results(graded, course):
    """The fixture ran with --jobs = the cores (2 here); one at a time, again, must match it."""
    run = subprocess.run(
        [sys.executable, "-m", "course_utils.grade", str(course / "submissions"), "--reference",
         str(course / "notebooks"), "--timeout", "60", "--jobs", "1", "--json", str(course / "serial.json"),
         "--csv", str(course / "serial.csv")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (course / "serial.json").read_text() == (course / "out" / "grades.json").read_text()
    assert (course / "serial.csv").read_text() == (course / "out" / "grades.csv").read_text()
    assert run.stdout == graded[0].stdout


def test_shards_merge_into_the_report_of_a_single_run(graded, course):
    for k in (1, 2):
        run = subprocess.run(
            [sys.executable, "-m", "course_utils.grade", str(course / "submissions"), "--reference",
             str(course / "notebooks"), "--timeout", "60", "--shard", f"{k}/2", "--json", str(course / f"shard{k}.json")],
            capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
    sizes = [len(json.loads((course / f"shard{k}.json").read_text())) for k in (1, 2)]
    assert sizes == [3, 2]  # 5 files: every other one
    shards = [str(course / f"shard{k}.json") for k in (2, 1)]
    assert grade.main(["--merge", *shards, "--json", str(course / "merged.json"), "--csv", str(course / "merged.csv")]) == 0
    assert (course / "merged.json").read_text() == (course / "out" / "grades.json").read_text()
    assert (course / "merged.csv").read_text() == (course / "out" / "grades.csv").read_text()
    assert grade.main(["--merge", shards[0], shards[0], "--json", str(course / "twice.json")]) == 2


def test_after_a_timeout_later_cells_report_their_own_result(tmp_path):
    """Q1 loops forever; Q2 is right, Q3 wrong; then a cell kills the kernel: a new kernel reruns
    the cells before it and goes on without it, so Q4, answered right, still scores."""
    solution = nbh.write(nbh.light_solution(), tmp_path / "notebooks" / "01_toy.ipynb")
    nb = release.release_notebook(nbformat.read(solution, as_version=4))
    nbh.answer(nb, "add", "while True: pass")
    nbh.answer(nb, "scale", "out.append(k * x)")
    nbh.answer(nb, "greet", 'return "hi"')
    nbh.answer(nb, "square", "return x * x")
    nb.cells.insert(nb.cells.index(nbh.cell(nb, "q4")), nbh.code("exit", "import os; os._exit(1)"))
    result = grade.grade(nbh.write(nb, tmp_path / "01_toy.ipynb"), solution.parent, timeout=3)
    assert [q.reason for q in result.questions] == [
        "Timeout of 3 seconds exceeded executing cell", "",
        "FAIL got greet 'hi' expected greet 'hello Ada'", ""]
    exit_cell = [c for c in result.failed_cells if c["source"] == "import os; os._exit(1)"]
    assert [c["cell"] for c in exit_cell] == [14]
    assert "cell 14 (0-based) `import os; os._exit(1)`: " in grade.format_table(result)


# --- without a kernel -------------------------------------------------------------------------

def questions():
    return grade.read_questions(nbh.toy_solution())


def test_read_questions_takes_points_titles_and_names_from_the_reference():
    qs = questions()
    assert [(q.number, q.title, q.points, len(q.checks)) for q in qs.values()] == [
        ("1", "add", 1, 1), ("2", "scale", 2, 2), ("3", "greet", 1, 1), ("4", "square", 1, 1)]


def test_reference_check_cell_without_points_or_output_is_an_error():
    nb = nbh.toy_solution()
    nbh.cell(nb, "q3").source = "### Question 3: greet"
    with pytest.raises(grade.GradeError, match="cell 13: check cell of Question 3 has no heading"):
        grade.read_questions(nb, "01_toy.ipynb")
    nb = nbh.toy_solution()
    nbh.cell(nb, "check-add").outputs = []
    with pytest.raises(grade.GradeError, match="no stored output"):
        grade.read_questions(nb)


def graded_ids(submission):
    graded = grade.build_graded_notebook(submission, questions(), nbh.toy_solution())
    code_cells = [cell for cell in graded.notebook.cells if cell.cell_type == "code"]
    assert len(graded.tags) == len(code_cells)
    ref_ids = {(q.number, k): check.id for q in questions().values() for k, check in enumerate(q.checks)}
    return [ref_ids[tag] if tag else cell.source.split("\n")[0][:12]
            for cell, tag in zip(code_cells, graded.tags)], graded.notes


def test_deleted_check_cell_goes_back_after_the_cell_above_it_in_the_reference():
    nb = nbh.toy_solution()
    for cell_id in ("check-add", "check-scale", "check-greet", "check-square"):
        nbh.delete(nb, cell_id)
    nbh.cell(nb, "q4").source = "### Question 4 (renamed heading)"
    nb.cells.append(nbh.code("late", "def add(a, b):\n    return a + b"))  # no guess: ids decide
    ids, notes = graded_ids(nb)
    assert ids == ["from course_", "# NBVAL_CHEC", "def add(a: i", "check-add", "def scale(xs", "check-scale",
                   "history = [1", "check-scale-len", "def greet(na", "check-greet", "def square(x",
                   "check-square", "def add(a, b"]
    assert notes[("1", 0)] == ["check cell deleted, restored"]


def test_moved_check_cell_is_graded_where_the_student_put_it():
    nb = nbh.toy_solution()
    check = nbh.cell(nb, "check-add")
    nbh.delete(nb, "check-add")
    nb.cells.append(check)
    ids, notes = graded_ids(nb)
    assert ids[-1] == "check-add" and ids.count("check-add") == 1 and ("1", 0) not in notes


def test_without_ids_check_cells_pair_by_question_line_and_go_back_before_the_next_question():
    """A submission saved by nbformat < 4.5 has no cell ids."""
    nb = nbh.toy_solution()
    nbh.delete(nb, "check-add")
    nbh.delete(nb, "check-greet")
    nbh.delete(nb, "q4")
    check = nbh.cell(nb, "check-scale")
    check.source = check.source.replace("[3, 6]", "[4, 5]")
    for cell in nb.cells:
        del cell["id"]
    ids, notes = graded_ids(nb)
    assert ids == ["from course_", "# NBVAL_CHEC", "def add(a: i", "check-add", "def scale(xs", "check-scale",
                   "history = [1", "check-scale-len", "def greet(na", "def square(x", "check-square",
                   "check-greet"]  # no Question 4 heading left: at the end
    assert notes == {("1", 0): ["check cell deleted, restored"], ("2", 0): ["check cell edited, reference used"],
                     ("3", 0): ["check cell deleted, restored"]}


def test_edited_check_cell_is_replaced_by_the_reference():
    nb = nbh.toy_solution()
    check = nbh.cell(nb, "check-add")
    check.source = check.source.replace("5, ", "6, ")
    check.outputs = [nbh.stdout("PASS add(2, 3) 6\n")]
    nb.cells.insert(6, nbformat.from_dict(check))  # a duplicate is dropped
    graded = grade.build_graded_notebook(nb, questions(), nbh.toy_solution())
    ref = nbh.cell(nbh.toy_solution(), "check-add")
    used = [c for c in graded.notebook.cells if c.cell_type == "code" and "# Question 1" in c.source]
    assert [(c.source, c.outputs) for c in used] == [(ref.source, ref.outputs)]
    assert graded.notes[("1", 0)] == ["check cell edited, reference used"]
    assert graded.origins[:4] == [1, 2, 4, 5]  # each code cell's index in the submission


AFTER_CRASH = "failed after an earlier cell timed out or crashed the kernel"
EXPECTED = [nbh.stdout("PASS x\n")]


@pytest.mark.parametrize("record, reason", [
    ({"status": "timeout"}, "Timeout of 60 seconds exceeded executing cell"),
    ({"status": "stopped"}, "Timeout of 60 seconds exceeded executing cell; it ignored the interrupt, "
                            "so the kernel was stopped"),
    ({"status": "dead"}, AFTER_CRASH),
    ({"status": "died"}, "the kernel died in this cell (os._exit, a crash, or out of memory?)"),
    ({"status": "error", "error": "ValueError: bad\nshape"}, "raised ValueError: bad shape"),
    ({"status": "ok", "outputs": []}, "printed nothing, expected 'PASS x'"),
    ({"status": "ok", "outputs": [nbh.stdout("None\n")]}, "printed 'None', expected 'PASS x'"),
    ({"status": "ok", "outputs": [nbh.stdout("\x1b[31mFAIL got 3\x1b[0m\n")]}, "FAIL got 3"),
    ({"status": "ok", "outputs": [nbh.stdout("Question 1: not answered yet (add raises NotImplementedError)\n")]},
     "Question 1: not answered yet (add raises NotImplementedError)"),
    ({"status": "ok", "outputs": [nbh.stdout("PASS x\n"), nbformat.v4.new_output(
        "stream", name="stderr", text="UserWarning: x\n")]}, "unexpected output on stderr (a warning or an error message?)"),
    ({"status": "ok", "outputs": [nbh.stdout("PASS x  \n")]}, ""),
    (None, "not run"),
])
def test_cell_reason_is_one_line(record, reason):
    assert grade.cell_reason(record, "", 60, EXPECTED) == reason


def test_a_cell_run_before_its_definition_says_so():
    nb = nbh.toy_solution()
    check = nbh.cell(nb, "check-add")
    nbh.delete(nb, "check-add")
    nb.cells.insert(3, check)  # above the cell that defines add
    graded = grade.build_graded_notebook(nb, questions(), nbh.toy_solution())
    records = [{"status": "ok", "outputs": []}] * len(graded.tags)
    records[graded.tags.index(("1", 0))] = {"status": "error", "error": "NameError: name 'add' is not defined"}
    result = grade.score(graded, questions(), records, "", 60, "s.ipynb", "r.ipynb")
    assert result.questions[0].reason == ("raised NameError: name 'add' is not defined (add is defined below, "
                                          "in cell 5: cells out of order?)")


def test_reference_is_found_by_name_or_lesson_number(course):
    notebooks = course / "notebooks"
    assert grade.find_reference(course / "x" / "01_toy.ipynb", notebooks) == notebooks / "01_toy.ipynb"
    assert grade.find_reference(course / "bob_01_toy (2).ipynb", notebooks) == notebooks / "01_toy.ipynb"
    with pytest.raises(grade.GradeError, match="No single reference notebook"):
        grade.find_reference(course / "02_other.ipynb", notebooks)
    assert grade.find_reference(course / "ada_lab0.ipynb", notebooks, lesson="01") == notebooks / "01_toy.ipynb"
    with pytest.raises(grade.GradeError, match="has no lesson number: .* or pass --lesson NN"):
        grade.find_reference(course / "ada_lab0.ipynb", notebooks)


def test_missing_submission_or_reference_is_a_usage_error(course, capsys):
    reference = ["--reference", str(course / "notebooks")]
    assert grade.main([str(course / "nope" / "01_toy.ipynb")] + reference) == 2
    assert "error: Submission" in capsys.readouterr().err
    stray = nbh.write(nbh.toy_solution(), course / "stray" / "07_other.ipynb")
    assert grade.main([str(stray)] + reference) == 2
    assert "No single reference notebook" in capsys.readouterr().err


def test_profile_names_match_runtime():
    from course_utils import runtime
    assert (grade.PROFILE_ENV, grade.PROFILE_NAMES) == (runtime.PROFILE_ENV, runtime.PROFILE_NAMES)


def test_unreadable_submission_scores_zero_without_running(course):
    broken = course / "broken" / "01_toy.ipynb"
    broken.parent.mkdir()
    broken.write_text("{ not json")
    result = grade.grade(broken, course / "notebooks")
    assert (result.score, result.total) == (0, nbh.TOTAL_POINTS)
    assert result.questions[0].reason == "not a readable notebook (NotJSONError)"


def test_unexpected_error_while_grading_scores_zero(course, monkeypatch):
    def broken(*args):
        raise KeyError("cells")
    monkeypatch.setattr(grade, "build_graded_notebook", broken)
    result = grade.grade(course / "submissions" / ADA, course / "notebooks")
    assert (result.score, result.total, result.error) == (0, nbh.TOTAL_POINTS, "not graded: KeyError: 'cells'")


def fake_grades(monkeypatch, *outcomes):
    """Replace grade.grade: each call returns full marks, or raises the next exception in ``outcomes``."""
    calls = []

    def fake(path, reference_dir, **options):
        calls.append((path.name, options["lesson"]))
        outcome = outcomes[len(calls) - 1] if len(calls) <= len(outcomes) else None
        if outcome:
            raise outcome
        return grade.Grade(str(path), "ref", [grade.QuestionResult("1", "add", 1.0, 1.0, True)], [])
    monkeypatch.setattr(grade, "grade", fake)
    return calls


@pytest.fixture
def lesson(tmp_path):
    """A reference folder and two submissions, a.ipynb and b.ipynb (no lesson number in their names)."""
    nbh.write(nbh.toy_solution(), tmp_path / "notebooks" / "01_toy.ipynb")
    return [str(nbh.write(nbh.toy_solution(), tmp_path / f"{name}.ipynb")) for name in "ab"] + [
        "--jobs", "1", "--reference", str(tmp_path / "notebooks"), "--lesson", "01"]


def test_lesson_option_grades_misnamed_files(lesson, monkeypatch, capsys):
    calls = fake_grades(monkeypatch)
    assert grade.main(lesson) == 0
    assert calls == [("a.ipynb", "01"), ("b.ipynb", "01")]
    assert grade.main(lesson[:-1] + ["07"]) == 2
    assert "No single reference notebook for lesson 07" in capsys.readouterr().err


def test_unwritable_output_fails_before_grading_and_folders_are_made(lesson, tmp_path, monkeypatch, capsys):
    calls = fake_grades(monkeypatch)
    (tmp_path / "file").write_text("")
    assert grade.main(lesson + ["--csv", str(tmp_path / "file" / "g.csv")]) == 2
    assert calls == [] and "error: Cannot write" in capsys.readouterr().err
    assert grade.main(lesson + ["--json", str(tmp_path / "new" / "g.json")]) == 0
    assert len(json.loads((tmp_path / "new" / "g.json").read_text())) == 2


def test_results_are_written_after_each_submission(lesson, tmp_path, monkeypatch, capsys):
    fake_grades(monkeypatch, None, KeyboardInterrupt())
    out = ["--json", str(tmp_path / "g.json"), "--csv", str(tmp_path / "g.csv")]
    assert grade.main(lesson + out) == 130
    assert "interrupted: 1 of 2 submissions graded" in capsys.readouterr().err
    assert [r["submission"] for r in json.loads((tmp_path / "g.json").read_text())] == [lesson[0]]
    assert len((tmp_path / "g.csv").read_text().splitlines()) == 2


def test_other_files_and_names_without_a_lesson_number_are_listed_not_graded(tmp_path, monkeypatch):
    calls = fake_grades(monkeypatch)
    nbh.write(nbh.toy_solution(), tmp_path / "notebooks" / "01_toy.ipynb")
    nbh.write(nbh.toy_solution(), tmp_path / "class" / "01_toy.ipynb")
    nbh.write(nbh.toy_solution(), tmp_path / "class" / "vgg16_homework.ipynb")  # not "lesson 16"
    (tmp_path / "class" / "01_toy.py").write_text("print('exported')\n")
    out = tmp_path / "class" / "grades.json"  # the grader's own output is not a submission
    assert grade.main([str(tmp_path / "class"), "--reference", str(tmp_path / "notebooks"), "--json", str(out)]) == 0
    assert grade.main([str(tmp_path / "class"), "--reference", str(tmp_path / "notebooks"), "--json", str(out)]) == 0
    errors = {Path(r["submission"]).name: r["error"] for r in json.loads(out.read_text())}
    assert errors == {
        "01_toy.ipynb": "",
        "01_toy.py": "not graded: 01_toy.py is not a notebook: submit the .ipynb file",
        "vgg16_homework.ipynb": "not graded: vgg16_homework.ipynb has no lesson number: rename it like its "
                                "lesson (NN_topic.ipynb, e.g. 00_setup.ipynb) or pass --lesson NN."}
    assert [name for name, _ in calls] == ["01_toy.ipynb", "01_toy.ipynb"]


def test_csv_rows_stay_on_one_line(tmp_path):
    bad = grade.Grade("sub\nmitted.ipynb", "", [], [], error="not graded: line one\nline two")
    grade.write_results([bad], None, tmp_path / "g.csv")
    assert (tmp_path / "g.csv").read_text().splitlines() == [
        "submission,score,total,error", "sub mitted.ipynb,0,0,not graded: line one line two"]


def test_references_are_read_once_and_changes_are_reported(tmp_path, monkeypatch):
    """A reference edited or deleted during the run changes nobody's grade, and is reported."""
    reference = nbh.write(nbh.light_solution(), tmp_path / "notebooks" / "01_toy.ipynb")
    submissions = [nbh.write(nbh.light_solution(), tmp_path / f"{name}_01_toy.ipynb") for name in "ab"]
    course = sandbox.Course.snapshot(reference.parent)

    def run(notebook, course_, limits):  # stands in for the kernel: every cell prints its answer
        reference.unlink(missing_ok=True)
        return [{"status": "ok", "outputs": cell.outputs} for cell in notebook.cells
                if cell.cell_type == "code"], ""
    monkeypatch.setattr(sandbox, "run", run)
    first, second = (grade.grade(path, reference.parent, course=course) for path in submissions)
    assert (first.score, second.score) == (nbh.TOTAL_POINTS, nbh.TOTAL_POINTS), (first, second)
    assert first.warnings == [f"reference notebooks changed while it ran (later submissions still use the "
                              f"copy taken at the start): {reference}"] and second.warnings == []


def test_bench_grade_makes_a_class_of_untouched_solved_and_partly_solved_copies(tmp_path):
    from benchmarks import bench_grade
    kinds = bench_grade.make_class(tmp_path, 4, ["01"])
    assert kinds == ["untouched", "solved", "partly solved", "untouched"]
    files = sorted(tmp_path.glob("student*_01_*.ipynb"))
    assert len(files) == 4 and all(grade.find_reference(f, bench_grade.ROOT / "notebooks") for f in files)
    stubs = [sum("NotImplementedError" in c.source for c in nbformat.read(f, as_version=4).cells) for f in files]
    assert stubs[1] == 0 and 0 < stubs[2] < stubs[0] == stubs[3]


def test_the_default_reference_is_the_checkout_s_notebooks_wherever_the_grader_runs(tmp_path, monkeypatch):
    """An instructor grading from another folder (``cd ~/class``) still finds the references."""
    checkout = Path(grade.__file__).resolve().parents[1] / "notebooks"
    monkeypatch.chdir(tmp_path)
    assert grade._parser().parse_args(["x.ipynb"]).reference == checkout
    (tmp_path / "notebooks").mkdir()  # a references folder here wins
    assert grade._parser().parse_args(["x.ipynb"]).reference == Path("notebooks")


def test_on_native_windows_the_grader_says_to_use_wsl(monkeypatch, capsys):
    monkeypatch.setattr(sys, "platform", "win32")
    assert grade.main(["x.ipynb"]) == 2
    assert "WSL" in capsys.readouterr().err
