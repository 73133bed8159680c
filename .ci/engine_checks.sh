#!/usr/bin/env bash
# Engine checks for CI (docs/runners.md): start a dask.distributed cluster on 127.0.0.1 (a scheduler
# and two worker processes, on free ports the OS picks), then run tests/test_engines.py against it:
# generate, stats and score on the cluster with --runner=DaskRunner, and each built as an offline
# Dataflow job whose staged pipeline is replayed in process, every output byte compared with the
# in-process FnApiRunner's. The cluster is stopped when this script exits, however it exits.
# Called from .ci/run beside the normal suite, with the project's python as $PYTHON or `python`.
#
#   bash .ci/engine_checks.sh       # exit status: pytest's (5, "no tests ran", counts as failure)
#
# SARCHAT_SKIP_ENGINE_CHECKS=1 skips it (say why in the CI log).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${SARCHAT_SKIP_ENGINE_CHECKS:-}" ]]; then
  echo "engine_checks: skipped (SARCHAT_SKIP_ENGINE_CHECKS is set)"
  exit 0
fi

PYTHON=${PYTHON:-python}
start=$(date +%s)
work=$(mktemp -d)
pids=()

# Workers first, then the scheduler; a process still there after 10 s is killed (a worker closing
# gracefully can wait on a scheduler that is gone, and a plain `wait` then hangs CI).
stop_cluster() {
  local pid i alive
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
  for _ in $(seq 100); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM

# The score report prints a date; the workers write the report, so they read it too.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1767225600}
export SARCHAT_NO_PROGRESS=1
# Workers import sarchat like the launcher (an editable install, or this checkout on the path).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$PYTHON" -m distributed.cli.dask_scheduler --host 127.0.0.1 --port 0 --no-dashboard \
  --scheduler-file "$work/scheduler.json" >"$work/scheduler.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do [[ -s "$work/scheduler.json" ]] && break; sleep 0.1; done
for i in 1 2; do
  "$PYTHON" -m distributed.cli.dask_worker --scheduler-file "$work/scheduler.json" --host 127.0.0.1 \
    --nthreads 1 --no-nanny --no-dashboard --name "worker-$i" --local-directory "$work/worker-$i" \
    >"$work/worker-$i.log" 2>&1 &
  pids+=($!)
done
address=$("$PYTHON" - "$work/scheduler.json" <<'EOF'
import json, sys
from distributed import Client
address = json.load(open(sys.argv[1]))["address"]
with Client(address, timeout=60) as client:
    client.wait_for_workers(2, timeout=120)
print(address)
EOF
)
echo "engine_checks: scheduler $address and 2 workers up in $(( $(date +%s) - start )) s"

t0=$(date +%s)
set +e
SARCHAT_ENGINE_CHECKS=1 SARCHAT_DASK_ADDRESS="$address" SARCHAT_ENGINE_TIMES="$work/times.json" \
  "$PYTHON" -m pytest -q -p no:cacheprovider -rxXs tests/test_engines.py
status=$?
set -e
if [[ -s "$work/times.json" ]]; then echo "engine_checks: seconds per command:"; cat "$work/times.json"; echo; fi
if [[ $status -ne 0 ]]; then
  for log in "$work"/*.log; do echo "--- $(basename "$log") (last lines)"; tail -n 20 "$log"; done
fi
echo "engine_checks: tests/test_engines.py in $(( $(date +%s) - t0 )) s (exit $status); all in $(( $(date +%s) - start )) s"
exit $status
