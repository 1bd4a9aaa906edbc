"""CPU time by process, read from /proc: where a benchmark's CPU goes, and what other processes on the machine take.

    before = snapshot(); ...; used(before, snapshot())  # {group: CPU seconds}

Processes are grouped by what they are to this benchmark: this process, its descendants (a local server, a local
Ray instance's proxy, ingress, replicas and the rest of Ray, told apart by their process titles), and every other
process on the machine ("other processes": other users' work on a shared machine). Linux only.
"""

from __future__ import annotations

import os
from pathlib import Path

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
OTHERS = "other processes (not this benchmark's)"
# (substring of the command line, group), first match wins; descendants matching none are "other Ray processes"
GROUPS = (
    ("hub serve", "local server (genhub serve)"),
    ("ray::ProxyActor", "Ray gRPC proxy"),
    ("ray::ServeReplica:genhub:Ingress", "Ray ingress"),
    ("ray::ServeReplica:genhub:model-bench-ddpm-scaling", "Ray replicas of the autoscaling model"),
    ("ray::ServeReplica:genhub:model-", "Ray model replica"),
)


def _read(pid: str) -> tuple[int, float, str] | None:
    """(parent pid, CPU seconds, command line) of ``pid``; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid ... utime stime (14th, 15th)
    return int(fields[1]), (int(fields[11]) + int(fields[12])) * TICK_S, cmdline


def process_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0.0 when it is gone)."""
    info = _read(str(pid))
    return info[1] if info is not None else 0.0


def snapshot() -> dict[int, tuple[str, float]]:
    """{pid: (group, CPU seconds so far)} of every process."""
    procs = {int(pid): info for pid in os.listdir("/proc") if pid.isdigit() and (info := _read(pid)) is not None}
    me, out = os.getpid(), {}
    for pid, (ppid, seconds, cmdline) in procs.items():
        ancestor, hops = pid, 0
        while ancestor not in (me, 0, 1) and ancestor in procs and hops < 64:
            ancestor, hops = procs[ancestor][0], hops + 1
        if pid == me:
            group = "benchmark clients (this process)"
        elif ancestor != me:
            group = OTHERS
        else:
            group = next((name for key, name in GROUPS if key in cmdline), "other Ray processes (controller, raylet, GCS, ...)")
        out[pid] = (group, seconds)
    return out


def used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds used by each group between two snapshots (processes that ended meanwhile are not counted)."""
    totals: dict[str, float] = {}
    for pid, (group, seconds) in after.items():
        start = before.get(pid, (group, 0.0))[1]
        totals[group] = totals.get(group, 0.0) + max(0.0, seconds - start)
    return totals


def nice_of(title: str) -> int | None:
    """The nice value of the first process whose command line contains ``title``."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        info = _read(pid)
        if info is not None and title in info[2]:
            try:
                return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
            except (OSError, IndexError, ValueError):
                return None
    return None
