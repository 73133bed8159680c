"""Where `sarchat generate` spends its time beyond the floor: a cProfile of the whole command, in process.

Builds SARDet-shaped annotations at --scale (as generate_scale.py does), then:
  - runs `sarchat generate` (Parquet only, the in-process FnApiRunner, so one process holds every
    stage and one profile sees them all) under cProfile, and prints the project's functions and
    Beam's heaviest by cumulative time (--profile FILE keeps the stats for pstats/snakeviz);
  - with --compare CHECKOUT ...: alternates runs of this checkout and each other one (a `git
    archive` of another commit, say), each in a fresh process without the profiler, and prints
    the CPU seconds of the command (time.process_time: on a shared machine the CPU time of the
    one process is steadier than its wall) and the floor's in a fresh process (json.loads of the
    inputs + a zstd rewrite of the rows); medians of --repeats.

    python benchmarks/generate_profile.py [--scale 0.1] [--profile gen.prof] [--compare CHECKOUT ...] [--repeats 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.generate_scale import dataset  # noqa: E402

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RUN = r"""
import contextlib, cProfile, io, json, sys, time
import apache_beam  # noqa: F401  (importing Beam is a fixed cost, outside the figure)
from sarchat.beam_pipelines import generate
root, out, profile = sys.argv[1], sys.argv[2], sys.argv[3]
argv = ["--input", root, "--output", out, "--formats", "parquet", "--no-progress"]
prof = cProfile.Profile() if profile else None
wall, cpu = time.perf_counter(), time.process_time()
with contextlib.redirect_stdout(io.StringIO()):
    if prof:
        prof.runcall(generate.run, argv)
    else:
        generate.run(argv)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
if prof:
    prof.dump_stats(profile)
print(json.dumps({"wall": wall, "cpu": cpu}))
"""

FLOOR = r"""
import glob, io, json, sys, time
import pyarrow as pa, pyarrow.parquet as pq
root, out = sys.argv[1], sys.argv[2]
table = pa.concat_tables([pq.read_table(p) for p in sorted(glob.glob(out + "/parquet/*/*.parquet"))]).combine_chunks()
wall, cpu = time.perf_counter(), time.process_time()
for split in ("train", "test"):
    with open(f"{root}/Annotations/{split}.json", "rb") as f:
        json.loads(f.read())
pq.write_table(table, io.BytesIO(), compression="zstd")
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "rows": table.num_rows}))
"""


def run(code, script, *args):
    env = dict(os.environ, PYTHONPATH=code)
    # run in `code`: `python -c` puts the working folder first on sys.path, before PYTHONPATH
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=code, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def show_profile(path, top=25):
    import pstats

    stats = pstats.Stats(path)
    rows = []
    for (file, line, name), (_, calls, _, cum, _) in stats.stats.items():
        if "/sarchat/" in file or "/transforms/" in file or name in ("write_table", "realpath", "counter"):
            rows.append((cum, calls, f"{file.split('/sarchat/')[-1].split('site-packages/')[-1]}:{line}({name})"))
    print(f"profile: {stats.total_tt:.1f} s in {stats.total_calls:,} calls; the project's functions by cumulative time")
    for cum, calls, label in sorted(rows, reverse=True)[:top]:
        print(f"  {cum:7.2f} s {calls:>9,} calls  {label}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=0.1, help="multiple of SARDet (default 0.1: ~206k dialogues)")
    p.add_argument("--profile", default=None, help="keep the cProfile stats here")
    p.add_argument("--compare", nargs="*", default=[], help="other checkouts to time beside this one")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "sarchat-bench"))
    args = p.parse_args(argv)
    root = dataset(args.workdir, args.scale)
    out = os.path.join(args.workdir, "profile-out")
    path = args.profile or os.path.join(args.workdir, "generate.prof")
    root, out, path = os.path.abspath(root), os.path.abspath(out), os.path.abspath(path)
    run(HERE, RUN, root, out, path)
    show_profile(path)
    if not args.compare:
        return 0
    codes = [HERE] + [os.path.abspath(c) for c in args.compare]
    cpu = {c: [] for c in codes}
    for _ in range(args.repeats):
        for code in codes:  # alternating, so each comparison is of runs minutes apart
            cpu[code].append(run(code, RUN, root, os.path.join(args.workdir, "compare-out"), "")["cpu"])
    floor = statistics.median(run(HERE, FLOOR, root, out)["cpu"] for _ in range(args.repeats))
    print(f"\nCPU s of `sarchat generate` in process, scale {args.scale:g}, medians of {args.repeats}; "
          f"floor {floor:.2f} s CPU (fresh process)")
    for code in codes:
        m = statistics.median(cpu[code])
        print(f"  {m:6.2f} s  {m / floor:5.2f} x floor  {m / statistics.median(cpu[HERE]):5.2f} x this checkout  "
              f"runs {', '.join(f'{c:.2f}' for c in cpu[code])}  {code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
