"""The graded kernel's launcher: limits, then ``ipykernel`` in the same process.

Started by ``worker`` (through the kernelspec that ``sandbox`` writes) as
``python -m course_utils.grading.kernel -f CONNECTION_FILE``. Before the student's code runs it:

- caps the kernel's address space at ``$COURSE_GRADE_MEMORY`` bytes (``RLIMIT_AS``): a huge
  allocation raises ``MemoryError`` in the cell instead of waking the host's OOM killer;
- in the worker's own network namespace (no network), turns its loopback on: ``torchrun`` and
  other local servers work, and reach only this submission;
- on Linux, in the worker's own mount namespace, makes the whole file system read-only except
  ``$COURSE_GRADE_WRITABLE`` (the submission's own folder; ``/dev/shm`` and other separate
  mounts keep their rights), then gives up every capability (even as root: no way to remount,
  to override file permissions or to signal other users' processes);

then replaces itself with ``ipykernel`` (``os.execv``), keeping its process id.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import resource
import socket
import struct
import sys

MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def rebind(path: str, read_only: bool) -> None:
    """Bind ``path`` onto itself, read-only or writable (only in this mount namespace); OSError if refused."""
    libc = ctypes.CDLL(None, use_errno=True)
    flags = MS_REMOUNT | MS_BIND | (MS_RDONLY if read_only else 0)
    if (libc.mount(path.encode(), path.encode(), None, MS_BIND | MS_REC, None) != 0 or
            libc.mount(None, path.encode(), None, flags, None) != 0):
        raise OSError(ctypes.get_errno(), f"cannot bind {path}")


def drop_capabilities() -> None:
    """Empty the capability bounding set: after ``execv`` even root has no capabilities."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    for capability in range(64):
        libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)  # fails (harmlessly) past the last one


def namespace(kind: str) -> str:
    """This process's ``kind`` namespace ("mnt", "net"; "" where there is no such thing)."""
    try:
        return os.readlink(f"/proc/self/ns/{kind}")
    except OSError:
        return ""


def loopback_up() -> None:
    """Turn on the interface ``lo`` (a new network namespace starts with it down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def main(argv: list[str]) -> None:
    memory = int(os.environ.get("COURSE_GRADE_MEMORY", "0"))
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # Only in namespaces of our own: never change the grader's (the whole machine's) network or files.
    grader_net, grader_mounts = os.environ.get("COURSE_GRADE_HOST_NAMESPACES", " ").split(" ", 1)
    if grader_net and namespace("net") not in ("", grader_net):
        try:
            loopback_up()
        except OSError:
            pass  # local servers (torchrun) then fail in the cell, with their own message
    writable = os.environ.get("COURSE_GRADE_WRITABLE", "")
    if writable and sys.platform == "linux" and grader_mounts and namespace("mnt") not in ("", grader_mounts):
        try:
            rebind("/", read_only=True)
            rebind(writable, read_only=False)
            drop_capabilities()
        except OSError:
            pass  # no mount namespace (sandbox.isolation() said so): the README says what is then open
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
