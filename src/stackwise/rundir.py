"""The run directory: one writer at a time, found writable before any training, never silently overwritten.

`claim(out, resume)` is the first thing a run does with its directory. It creates the directory, takes an exclusive
`flock` on `out/.lock` (held until the process ends, released by the kernel even after a SIGKILL; the file names the
holder, so a second run on the same directory is refused with a line saying who holds it), checks that the directory
and its checkpoints/ can be written, and refuses to start a new run in a directory that already holds one (its
checkpoints, final/ or result.json): continuing it is `--resume`.
"""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile
from pathlib import Path

from stackwise.errors import UserError

LOCK = ".lock"


class Claim:
    """An open, locked `.lock` file; the lock lasts as long as this object (or the process)."""

    def __init__(self, fd: int):
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _check_writable(folder: Path) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UserError(f"--out: cannot write in {folder} ({e.strerror})") from None


def holds_run(out: Path) -> bool:
    ckpts = out / "checkpoints"
    return (out / "final").exists() or (out / "result.json").exists() or \
        (ckpts.is_dir() and any(p.name.startswith("step_") for p in ckpts.iterdir()))


def claim(out: Path, resume: bool) -> Claim:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UserError(f"--out: cannot use {out} as a run directory ({e.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise UserError(f"{out}: another stackwise run is writing this directory ({holder}); wait for it to finish "
                        "or choose another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    lock = Claim(fd)
    try:
        if not resume and holds_run(out):
            raise UserError(f"--out: {out} already holds a run; continue it with --resume {out}, or choose another "
                            "--out")
        _check_writable(out)
        ckpts = out / "checkpoints"
        if ckpts.exists() and not ckpts.is_dir():
            raise UserError(f"--out: {ckpts} is a file, not a directory")
        if ckpts.is_dir():
            _check_writable(ckpts)
    except UserError:
        lock.release()
        raise
    return lock
