"""``with checks.question(N):``: a check cell that reports, never stops Run All.

An untouched student copy must run to its last cell (Run All in JupyterLab and in Colab, which
ignores cell tags). Inside this block:

- a stub's ``raise NotImplementedError`` prints ``Question 1: not answered yet (make_layers
  raises NotImplementedError)``;
- a name that the check cell uses but that is not defined (the cell that defines it was not run,
  or sits below this one) prints which name and what to do; a ``NameError`` inside the student's
  function (a typo there) is reported like any other error, with where it happened;
- any other error raised by the student's code prints one ``FAIL`` line with the error and where
  it happened (function and line), so the student knows where to look.

Each of these lines differs from the stored answer, so nbval and the grader still score the
question 0; the kernel goes on to the next cell.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import torch

_PACKAGE = Path(__file__).resolve().parents[1]  # course_utils/


def _is_library(filename: str) -> bool:
    """True for code of course_utils, torch, the standard library and other installed packages."""
    if filename.startswith("<frozen"):
        return True
    path = Path(filename).resolve()
    library_roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return path.is_relative_to(_PACKAGE) or any(path.is_relative_to(root) for root in library_roots) \
        or "site-packages" in path.parts or "dist-packages" in path.parts


def _student_frame(error: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of the traceback that is the student's code (a notebook cell)."""
    frames = traceback.extract_tb(error.__traceback__)
    for frame in reversed(frames):
        if not _is_library(frame.filename):
            return frame
    return None


def _name_of(frame: traceback.FrameSummary, error: BaseException) -> str:
    """``make_layers`` or ``VGG16.__init__``: the function the frame runs (qualified where Python knows)."""
    tb = error.__traceback__
    while tb is not None:  # find the frame object to read its code's qualified name (Python >= 3.11)
        if tb.tb_frame.f_code.co_filename == frame.filename and tb.tb_lineno == frame.lineno:
            return getattr(tb.tb_frame.f_code, "co_qualname", tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return frame.name


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@contextlib.contextmanager
def question(number: int | str) -> Iterator[None]:
    """Run a question's checks; report an unanswered or crashing answer in one line instead of raising."""
    label = f"Question {number}"
    # The checks draw random weights and inputs: restore the CPU random state afterwards, so the
    # cells below (training) give the same results whether or not the question is answered.
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        except NotImplementedError as error:
            frame = _student_frame(error)
            innermost = traceback.extract_tb(error.__traceback__)[-1]
            if frame is not None and frame == innermost:  # the student's own stub raised it
                print(f"{label}: not answered yet ({_name_of(frame, error)} raises NotImplementedError)", flush=True)
            else:
                print(f"{label}: FAIL your code raised {_one_line(error)}{_where(error)}", flush=True)
        except NameError as error:
            frames = traceback.extract_tb(error.__traceback__)
            cells = [f for f in frames if not _is_library(f.filename)]
            if _is_library(frames[-1].filename):  # raised by the course's own code, not by a cell
                print(f"{label}: FAIL the check itself raised {_one_line(error)} "
                      f"(in {frames[-1].filename}, line {frames[-1].lineno}): please report it", flush=True)
            elif len(cells) > 1:  # raised inside the student's function, not by the check cell: a bug there
                print(f"{label}: FAIL your code raised {_one_line(error)}{_where(error)}", flush=True)
            else:  # the check cell itself names something that is not defined yet
                name = getattr(error, "name", None) or str(error)
                print(f"{label}: FAIL {name!s} is not defined: run the cell that defines it (above this one) first",
                      flush=True)
        except Exception as error:  # a crashing answer: one line, and Run All goes on
            print(f"{label}: FAIL your code raised {_one_line(error)}{_where(error)}", flush=True)


def _where(error: BaseException) -> str:
    frame = _student_frame(error)
    if frame is None:
        return ""
    code = (frame.line or "").strip()
    return f" (in {_name_of(frame, error)}, line {frame.lineno}{': ' + code if code else ''})"
