"""Runs one graded copy cell by cell and reports each code cell's result as JSON.

Started by ``sandbox`` as ``python -m course_utils.grading.worker`` (in PID, network and mount
namespaces of its own where Linux allows), with the job as JSON on stdin. It is the kernel's
parent (PID 1 of its namespace, ignoring SIGINT), so a kernel that signals its parent hits this
process, not the grader.

Each code cell gets one record, sent on stdout as soon as the cell is done, in order: ``status``
is "ok", "error" (the cell raised; ``error`` says what), "timeout" (over the cell time limit; the
kernel was interrupted), "stopped" (over the limit and deaf to the interrupt: the kernel was shut
down), "died" (the kernel died while running it: ``os._exit``, a crash) or "dead" (not run: the
kernel died again while the cells before were rerun, or too many kernels died), with the cell's
``outputs``. nbclient notices a dead kernel within a second. After a cell killed or hung its
kernel, a new kernel reruns the cells before it (their records stay those of the first run; a
cell that timed out is rerun, to the same time limit, so that what it did before is there again)
and goes on without it, so one bad cell does not zero the questions after it. The kernel's own stdout
and stderr go nowhere, so it cannot forge a record.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import nbformat
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode

MAX_OUTPUT = 200_000  # characters kept per cell: a cell that prints forever cannot fill the memory
PROBE_SECONDS = 10  # after a timeout, how long an interrupted kernel has to answer again
MAX_RESTARTS = 2  # kernels started anew after one died or was stopped, per submission


class _Client(NotebookClient):
    """nbclient that keeps at most ``MAX_OUTPUT`` characters of output per cell."""

    def output(self, outs, msg, display_id, cell_index):  # type: ignore[override]
        size = self._sizes.get(cell_index, 0) + len(json.dumps(msg.get("content", {})))
        self._sizes[cell_index] = size
        if size > MAX_OUTPUT:
            return None
        return super().output(outs, msg, display_id, cell_index)


TIMED_OUT = {"ename": "CellTimeoutError", "evalue": "over the cell time limit", "traceback": []}


def run(job: dict, emit) -> None:
    """Run the notebook of ``job``; ``emit`` each code cell's record as soon as it has one
    (module docstring), so that a submission stopped at its time limit keeps what it did.

    On a timeout nbclient interrupts the kernel and answers for it with ``TIMED_OUT``; a "pass"
    cell then probes whether the kernel listened (a cell that ignores SIGINT never would).
    """
    nb = nbformat.read(job["notebook"], as_version=4)
    replies: list[dict] = []

    def new_client() -> _Client:
        """A kernel manager and nbclient for a new kernel (after a death, nothing of the old one is reused)."""
        km = AsyncKernelManager(kernel_name="graded", transport="ipc", ip=job["ipc"],
                                kernel_spec_manager=KernelSpecManager(kernel_dirs=[job["kernels"]]))
        client = _Client(nb, km=km, timeout=job["cell_timeout"], allow_errors=True, interrupt_on_timeout=True,
                         error_on_timeout=TIMED_OUT, startup_timeout=120,
                         resources={"metadata": {"path": job["cwd"]}},
                         on_cell_executed=lambda cell, cell_index, execute_reply: replies.append(execute_reply))
        client._sizes = {}
        return client

    def execute(client: _Client, cell: NotebookNode, index: int) -> bool:
        """Run a cell; False when it timed out."""
        replies.clear()
        client.execute_cell(cell, index)
        return not (replies and replies[-1].get("content", {}).get("ename") == TIMED_OUT["ename"])

    code = [index for index, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    skipped: set[int] = set()  # cells that killed or hung a kernel: never run again
    done = 0  # records emitted so far (one per code cell, in order)
    for attempt in range(1 + MAX_RESTARTS):
        client = new_client()
        km = client.km
        with client.setup_kernel(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
            emit({"kernel_pid": km.provisioner.pid})
            alive = True
            for position, index in enumerate(code):
                cell = nb.cells[index]
                replay = position < done  # already reported: run again only to rebuild the kernel's state
                if index in skipped:
                    continue
                if not alive:
                    break
                saved = cell.outputs
                try:
                    if execute(client, cell, index):
                        errors = [o for o in cell.outputs if o.output_type == "error"]
                        status = "error" if errors else "ok"
                        error = ": ".join(filter(None, [errors[0].ename, errors[0].evalue])) if errors else ""
                    else:
                        status, error = "timeout", ""
                        client.timeout = PROBE_SECONDS
                        if not execute(client, nbformat.v4.new_code_cell("pass"), index):
                            status, alive = "stopped", False
                            run_sync(km.shutdown_kernel)(now=True)
                        nb.cells[index] = cell  # nbclient put the probe in the notebook, in its place
                        client.timeout = job["cell_timeout"]
                except DeadKernelError:
                    status, error, alive = "died", "", False
                if replay:
                    cell.outputs = saved  # a replay keeps the record of the first run
                    if not alive:  # it crashed this time: give up on restarting
                        skipped.update(code[done:])
                    continue
                outputs = [o for o in cell.outputs if status == "ok" or o.output_type != "error"]
                emit({"cell": {"status": status, "error": error, "outputs": outputs,
                               "truncated": client._sizes.get(index, 0) > MAX_OUTPUT}})
                done += 1
                if not alive:  # it killed or hung its kernel: never run again
                    skipped.add(index)
        if done == len(code) or attempt == MAX_RESTARTS:
            break
        # The kernel died or was stopped: start a new one, run again what came before (silently),
        # without the cell that killed it, and go on, so one bad cell does not zero later questions.
        if set(code[done:]) <= skipped:
            break
    for _ in code[done:]:
        emit({"cell": {"status": "dead", "outputs": []}})


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a kernel's os.kill(os.getppid(), SIGINT) changes nothing
    job = json.loads(sys.stdin.readline())
    out = sys.stdout
    sys.stdout = sys.stderr  # only emit() writes to the grader's channel

    def emit(message: dict) -> None:
        out.write(job["nonce"] + json.dumps(message) + "\n")
        out.flush()

    try:
        run(job, emit)
        emit({"done": True})
    except Exception as error:  # the kernel did not start, ...: said once, for the whole submission
        emit({"error": f"{type(error).__name__}: {error}"[:300]})


if __name__ == "__main__":
    main()
