"""Child processes: commands with a timeout, the process tree of a server (its CPU time, its peak RSS), stopping a
server and everything it started, and one cargo build at a time on this machine."""

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List

from .config import CARGO_NAMES

LIVE: Dict[int, subprocess.Popen] = {}  # servers started and not yet stopped, by pid


def sh(*cmd, timeout: float = 1800, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, timeout=timeout, **kwargs)


def descendants(pid: int) -> List[int]:
    """The pids of the processes below `pid` (children, grandchildren, ...)."""
    children: Dict[int, List[int]] = {}
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(')', 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def peak_rss(pid: int) -> Dict[int, int]:
    """VmHWM (KiB) of a process and of each of its descendants."""
    peaks = {}
    for each in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            match = re.search(r'^VmHWM:\s+(\d+) kB', Path(f'/proc/{each}/status').read_text(), re.MULTILINE)
            if match:
                peaks[each] = int(match.group(1))
    return peaks


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants so far."""
    ticks = 0
    for each in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f'/proc/{each}/stat').read_text().rsplit(')', 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf('SC_CLK_TCK')


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (it was started in a new session), SIGKILL after 10 s;
    then SIGKILL to any descendant that left the group and still runs."""
    below = descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    for pid in below:
        while Path(f'/proc/{pid}').exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left in the group
    LIVE.pop(proc.pid, None)


def stop_all() -> None:
    for proc in list(LIVE.values()):
        with contextlib.suppress(Exception):
            stop(proc)


def on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` blocks that stop the servers


def cargo_running() -> List[str]:
    running = []
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / 'comm').read_text().strip() in CARGO_NAMES:
                    running.append(entry.name)
    return running


def wait_for_cargo_idle(limit: float = 3600) -> None:
    """One cargo build at a time on this machine: wait until no cargo/rustc runs."""
    deadline = time.monotonic() + limit
    said = 0.0
    while running := cargo_running():
        if time.monotonic() > deadline:
            raise RuntimeError(f'cargo still running after {limit:.0f} s (pids {running})')
        if time.monotonic() - said > 60:
            print(f'  waiting for other cargo builds to finish (pids {" ".join(running)}) ...', flush=True)
            said = time.monotonic()
        time.sleep(5)
