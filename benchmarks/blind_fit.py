"""Fit time of the `blind` baseline (sarchat.inference.baselines.BlindPrior) on a synthetic train split.

    python benchmarks/blind_fit.py [--rows 400000] [--repeats 3] [--workdir DIR]

Writes --rows train dialogues (the generator's builder on SARDet-scale synthetic annotations,
benchmarks/score_scale.make_rows) as one Parquet file, then times, --repeats times each, medians:
  floor      reading the Parquet file's FIT_COLUMNS as Arrow batches, nothing else;
  reference  what the backend did before: every column of every row to a Python dict, BlindPrior.fit;
  fast       what `--backend blind` does now: FIT_COLUMNS only, BlindPrior.fit_tables;
and checks that both fits give the same prior.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.score_scale import make_rows  # noqa: E402
from sarchat.inference.baselines import FIT_COLUMNS, BlindPrior  # noqa: E402


def _rows(path):
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        yield from batch.to_pylist()


def _batches(path):
    return pq.ParquetFile(path).iter_batches(batch_size=65536, columns=list(FIT_COLUMNS))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    work = args.workdir or tempfile.mkdtemp(prefix="blind_fit_")
    path = os.path.join(work, f"train-{args.rows}.parquet")
    if not os.path.exists(path):
        pq.write_table(make_rows(args.rows, "train", seed=1), path)
    timings = {"floor": [], "reference": [], "fast": []}
    priors = {}
    for _ in range(args.repeats):
        for name, run in (("floor", lambda: sum(b.num_rows for b in _batches(path))),
                          ("reference", lambda: BlindPrior().fit(_rows(path)).to_dict()),
                          ("fast", lambda: BlindPrior().fit_tables(_batches(path)).to_dict())):
            t0 = time.perf_counter()
            priors[name] = run()
            timings[name].append(time.perf_counter() - t0)
    assert priors["reference"] == priors["fast"], "the fast fit's prior differs from the reference fit's"
    floor = statistics.median(timings["floor"])
    for name, values in timings.items():
        med = statistics.median(values)
        print(f"{name:<10} median {med:6.2f} s of {', '.join(f'{v:.2f}' for v in values)}  ({med / floor:.1f} x floor)")
    print(f"{args.rows} train rows; reference / fast = "
          f"{statistics.median(timings['reference']) / statistics.median(timings['fast']):.1f}; same prior")
    return 0


if __name__ == "__main__":
    sys.exit(main())
