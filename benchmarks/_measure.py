"""Wall time and peak resident memory of a command's process tree (Linux /proc)."""
import os
import subprocess
import threading
import time


def _tree_pids(root_pid):
    """root_pid and all its descendants (from /proc/<pid>/stat parent links)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    out, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(cmd, env=None, interval=0.1, per_process=False):
    """Run `cmd`; return (wall seconds, peak RSS in MiB, stdout+stderr text). The peak is of the
    whole process tree's sum, or with per_process=True of its largest single process (a Beam
    worker: what one machine of that size must hold)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    peaks, tree_peak, done = {}, [0], threading.Event()

    def sample():
        while not done.is_set():
            now = {pid: rss_kib(pid) for pid in _tree_pids(proc.pid)}
            tree_peak[0] = max(tree_peak[0], sum(now.values()))
            for pid, kib in now.items():
                peaks[pid] = max(peaks.get(pid, 0), kib)
            done.wait(interval)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    t.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}")
    peak = max(peaks.values(), default=0) if per_process else tree_peak[0]
    return wall, peak / 1024.0, out
