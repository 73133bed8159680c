#!/usr/bin/env bash
# In process vs a Dask cluster, the same inputs: generate, stats and score, each run REPEATS times
# alternately on Beam's in-process FnApiRunner and with --runner=DaskRunner on a scheduler and two
# single-thread worker processes started here on 127.0.0.1 (stopped on exit). Prints each run's wall
# seconds and the load average, then checks the outputs are byte-identical. Figures: docs/runners.md.
#
#   PYTHON=.venv/bin/python IMAGES=200 REPEATS=2 bash benchmarks/dask_cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
IMAGES=${IMAGES:-200}
REPEATS=${REPEATS:-2}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" SOURCE_DATE_EPOCH=1767225600 SARCHAT_NO_PROGRESS=1
W=$(mktemp -d)
pids=()
stop() { local p; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
         for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap stop EXIT
trap 'exit 130' INT TERM
"$PYTHON" -m distributed.cli.dask_scheduler --host 127.0.0.1 --port 0 --no-dashboard --scheduler-file "$W/s.json" >"$W/s.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do [[ -s "$W/s.json" ]] && break; sleep 0.1; done
for i in 1 2; do
  "$PYTHON" -m distributed.cli.dask_worker --scheduler-file "$W/s.json" --host 127.0.0.1 --nthreads 1 --no-nanny \
    --no-dashboard --local-directory "$W/w$i" >"$W/w$i.log" 2>&1 &
  pids+=($!)
done
ADDR=$("$PYTHON" -c "import json; print(json.load(open('$W/s.json'))['address'])")
"$PYTHON" -c "from distributed import Client; c = Client('$ADDR', timeout=60); c.wait_for_workers(2, timeout=120); c.close()"
sarchat() { "$PYTHON" -m sarchat.beam_pipelines.cli "$@"; }
sarchat synth --output "$W/data" --images "$IMAGES" --no-progress --quiet
sarchat generate --input "$W/data" --output "$W/gen" --no-progress >/dev/null
sarchat infer --dataset "$W/gen" --output "$W/cfar" --backend cfar --no-progress >/dev/null 2>&1
DASK=(--runner=DaskRunner "--dask_client_address=$ADDR" --dask_npartitions=2)
run() {  # label output-folder args...
  local label=$1 out=$2 t0; shift 2; t0=$(date +%s.%N)
  sarchat "$@" --output "$out" --no-progress >"$out.log" 2>&1
  printf '%-22s %7.1f s  (load average %s)\n' "$label" "$(echo "$(date +%s.%N) - $t0" | bc)" "$(cut -d' ' -f1 /proc/loadavg)"
}
for rep in $(seq "$REPEATS"); do
  run "generate in process" "$W/g-ip$rep" generate --input "$W/data" --images-per-shard 50
  run "generate on Dask" "$W/g-dk$rep" generate --input "$W/data" --images-per-shard 50 "${DASK[@]}"
  run "stats in process" "$W/s-ip$rep" stats --dataset "$W/gen"
  run "stats on Dask" "$W/s-dk$rep" stats --dataset "$W/gen" "${DASK[@]}"
  run "score in process" "$W/c-ip$rep" score --dataset "$W/gen" --predictions "$W/cfar" --num-buckets 8
  run "score on Dask" "$W/c-dk$rep" score --dataset "$W/gen" --predictions "$W/cfar" --num-buckets 8 "${DASK[@]}"
done
for x in g s c; do diff -rq "$W/$x-ip1" "$W/$x-dk1" >/dev/null && echo "$x: byte-identical" || echo "$x: DIFFERENT"; done
