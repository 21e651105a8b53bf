"""course_utils.files: whole-or-nothing writes of files and folders, and md5 checksums."""

import hashlib
import os

import pytest

from course_utils import files


def test_write_atomically_writes_binary_and_text_and_leaves_no_temporary_file(tmp_path):
    path = files.write_atomically(tmp_path / "a.bin", lambda f: f.write(b"\x00\x01"))
    assert path == tmp_path / "a.bin" and path.read_bytes() == b"\x00\x01"
    files.write_atomically(tmp_path / "b.csv", lambda f: f.write("é,1\n"), text=True)
    assert (tmp_path / "b.csv").read_bytes() == "é,1\n".encode("utf-8")  # UTF-8, "\n" kept on Windows too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.csv"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_previous_file_and_removes_its_temporary_file(tmp_path, error):
    path = tmp_path / "x.txt"
    path.write_text("old")

    def half_then_fail(f):
        f.write(b"half")
        raise error

    with pytest.raises(type(error)):
        files.write_atomically(path, half_then_fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_temporary_names_are_unique_and_found_again(tmp_path):
    (fd1, a), (fd2, b) = files.create_temporary(tmp_path / "run.pt"), files.create_temporary(tmp_path / "run.pt")
    os.close(fd1), os.close(fd2)
    assert a != b and a.name.startswith("run.pt.") and a.name.endswith(".tmp")
    (tmp_path / "run.pt").write_bytes(b"")
    (tmp_path / "other.pt.0badf00d.tmp").write_bytes(b"")  # another target's: not ours
    assert files.temporary_files(tmp_path / "run.pt") == sorted([a, b])


def test_write_folder_atomically_keeps_an_identical_folder_and_replaces_a_different_one(tmp_path):
    target = tmp_path / "set"

    def write(text):
        return lambda folder: (folder / "f.txt").write_text(text)

    files.write_folder_atomically(target, write("one"))
    inode = target.stat().st_ino
    files.write_folder_atomically(target, write("one"))
    assert target.stat().st_ino == inode  # the same folder: a reader keeps reading it
    files.write_folder_atomically(target, write("two"))
    assert (target / "f.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["set"]  # no .tmp-/.old- folders left
    with pytest.raises(ZeroDivisionError):
        files.write_folder_atomically(target, lambda folder: 1 / 0)
    assert (target / "f.txt").read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["set"]


def test_same_files_compares_names_and_bytes(tmp_path):
    for name, text in (("a", "1"), ("b", "1"), ("c", "2")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text(text)
    assert files.same_files(tmp_path / "a", tmp_path / "b")
    assert not files.same_files(tmp_path / "a", tmp_path / "c")
    assert not files.same_files(tmp_path / "a", tmp_path / "missing")


def test_md5sum_matches_hashlib_across_chunks(tmp_path):
    data = os.urandom((1 << 20) + 7)  # more than one chunk
    (tmp_path / "f").write_bytes(data)
    assert files.md5sum(tmp_path / "f") == hashlib.md5(data).hexdigest()
