"""Runs one graded copy cell by cell and reports each code cell's result as JSON.

Started by ``sandbox`` as ``python -m course_utils.grading.worker`` (in PID, network and mount
namespaces of its own where Linux allows), with the job as JSON on stdin. It is the kernel's
parent (PID 1 of its namespace, ignoring SIGINT), so a kernel that signals its parent hits this
process, not the grader.

Each code cell gets one record, sent on stdout as soon as the cell is done, in order: ``status``
is "ok", "error" (the cell raised; ``error`` says what), "timeout" (over the cell time limit; the
kernel was interrupted), "stopped" (over the limit and deaf to the interrupt: the kernel was shut
down), "died" (the kernel died while running it: ``os._exit``, a crash) or "dead" (not run: the
kernel had died or been stopped), with the cell's ``outputs``. nbclient notices a dead kernel
within a second. The kernel's own stdout and stderr go nowhere, so it cannot forge a record.
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
    km = AsyncKernelManager(kernel_name="graded", transport="ipc", ip=job["ipc"],
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[job["kernels"]]))
    replies: list[dict] = []
    client = _Client(nb, km=km, timeout=job["cell_timeout"], allow_errors=True, interrupt_on_timeout=True,
                     error_on_timeout=TIMED_OUT, startup_timeout=120, resources={"metadata": {"path": job["cwd"]}},
                     on_cell_executed=lambda cell, cell_index, execute_reply: replies.append(execute_reply))
    client._sizes = {}

    def execute(cell: NotebookNode, index: int) -> bool:
        """Run a cell; False when it timed out."""
        replies.clear()
        client.execute_cell(cell, index)
        return not (replies and replies[-1].get("content", {}).get("ename") == TIMED_OUT["ename"])

    with client.setup_kernel(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        emit({"kernel_pid": km.provisioner.pid})
        alive = True
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if not alive:
                emit({"cell": {"status": "dead", "outputs": []}})
                continue
            try:
                if execute(cell, index):
                    errors = [o for o in cell.outputs if o.output_type == "error"]
                    status = "error" if errors else "ok"
                    error = ": ".join(filter(None, [errors[0].ename, errors[0].evalue])) if errors else ""
                else:
                    status, error = "timeout", ""
                    client.timeout = PROBE_SECONDS
                    if not execute(nbformat.v4.new_code_cell("pass"), index):
                        status, alive = "stopped", False
                        run_sync(km.shutdown_kernel)(now=True)
                    client.timeout = job["cell_timeout"]
            except DeadKernelError:
                status, error, alive = "died", "", False
            outputs = [o for o in cell.outputs if status == "ok" or o.output_type != "error"]
            emit({"cell": {"status": status, "error": error, "outputs": outputs,
                           "truncated": client._sizes.get(index, 0) > MAX_OUTPUT}})


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
