#!/usr/bin/env python3
"""CPU seconds used by a set of processes while a command runs.

    queue_cpu.py POSTMASTER_PID -- COMMAND...

Runs COMMAND, samples /proc every 100 ms, and prints one JSON object:
wall seconds, CPU seconds of COMMAND and its children (the workers), and of
the PostgreSQL cluster (the postmaster and every process under it, including
backends that exit before the end: each pid's last sample counts).
"""
import json
import os
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_and_ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is state (field 3); utime is field 14, stime 15, ppid 4.
    return (int(fields[11]) + int(fields[12])) / TICK, int(fields[1])


def tree(roots):
    """Every pid whose ancestry reaches one of `roots`."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            s = cpu_and_ppid(int(name))
            if s:
                parents[int(name)] = s[1]
    out = set()
    for pid in parents:
        p = pid
        while p in parents and p not in roots and p > 1:
            p = parents[p]
        if p in roots:
            out.add(pid)
    return out


def main():
    postmaster = int(sys.argv[1])
    cmd = sys.argv[sys.argv.index("--") + 1:]
    base = {}
    for pid in tree({postmaster}):
        s = cpu_and_ppid(pid)
        if s:
            base[pid] = s[0]
    last_pg, last_worker = dict(base), {}
    start = time.time()
    proc = subprocess.Popen(cmd)
    while proc.poll() is None:
        for pid in tree({postmaster}):
            s = cpu_and_ppid(pid)
            if s:
                last_pg[pid] = s[0]
        for pid in tree({proc.pid}):
            s = cpu_and_ppid(pid)
            if s:
                last_worker[pid] = s[0]
        time.sleep(0.1)
    wall = time.time() - start
    pg = sum(v - base.get(pid, 0.0) for pid, v in last_pg.items())
    worker = sum(last_worker.values())
    print(json.dumps({"wall_s": round(wall, 3), "postgres_cpu_s": round(pg, 2),
                      "worker_cpu_s": round(worker, 2), "exit": proc.returncode}))
    sys.exit(proc.returncode)


main()
