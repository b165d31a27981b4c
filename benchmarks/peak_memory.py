"""Run a command and measure the peak memory of its whole process tree (it and every worker it starts).

`wait4`'s ru_maxrss reports the largest single process, which misses worker processes running side by side; this
samples the resident memory of every process in the command's session (/proc, Linux) and keeps the largest sum.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def _session_rss(sid: int) -> int:
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[3]) == sid:  # field 6 of stat, the session id (fields here start after the name)
            total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24, rss in pages
    return total


def run(cmd: list[str], interval: float = 0.05, **popen) -> tuple[int, float, int, int]:
    """(exit code, seconds, peak bytes of the whole tree, peak bytes of the command's own process (wait4))."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, start_new_session=True, **popen)
    peak = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, time.monotonic() - t0, peak, usage.ru_maxrss * 1024
        peak = max(peak, _session_rss(proc.pid))
        time.sleep(interval)
