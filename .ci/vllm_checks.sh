#!/usr/bin/env bash
# Real-vLLM checks for CI: build (or reuse) the CPU vLLM environment, then run tests/test_real_vllm.py
# with SARCHAT_VLLM_PYTHON pointing at it; then add lmms-eval to that env (.ci/lmms_env.sh) and run
# tests/test_real_lmms.py with SARCHAT_LMMS_PYTHON; then VLMEvalKit in a venv of its own on top of
# that env (.ci/vlmeval_env.sh) and tests/test_real_vlmeval.py with SARCHAT_VLMEVAL_PYTHON. Called from .ci/run beside the static checks and the suite, with
# the project's own python (the one that has Beam and pytest) as $PYTHON or `python` on PATH.
#
#   bash .ci/vllm_checks.sh            # exit status: the first failing pytest's (5, "no tests ran",
#                                      # counts as failure), else 0
#
# SARCHAT_SKIP_VLLM_CHECKS=1 skips it (say why in the CI log). Times on this 2-core machine are in
# docs/cpu_vllm.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${SARCHAT_SKIP_VLLM_CHECKS:-}" ]]; then
  echo "vllm_checks: skipped (SARCHAT_SKIP_VLLM_CHECKS is set)"
  exit 0
fi

PYTHON=${PYTHON:-python}
start=$(date +%s)
VLLM_PY=$(bash .ci/vllm_env.sh | tail -n 1)
echo "vllm_checks: vLLM environment ready in $(( $(date +%s) - start )) s: $VLLM_PY"

# run_tests VAR=PYTHON FILE [PYTEST ARGS]: one real-engine test file with its interpreter named in VAR; prints
# the time and leaves pytest's exit status in $status (never stops the script, so both files run).
run_tests() {
  local t0; t0=$(date +%s)
  set +e
  env "$1" "$PYTHON" -m pytest -q -p no:cacheprovider -rxXs "${@:3}" "$2"
  status=$?
  set -e
  echo "vllm_checks: $2 in $(( $(date +%s) - t0 )) s (exit $status)"
}

# one worker: two at a time (-n 2 --dist loadgroup, the file's two xdist groups) took 574 s on a quiet
# 2-core machine against 478 s for one, each engine's threads competing for the same two cores
run_tests "SARCHAT_VLLM_PYTHON=$VLLM_PY" tests/test_real_vllm.py
rc=$status

# lmms-eval on top of the same env (stamped, about 1 s when already added), then its test
start=$(date +%s)
LMMS_PY=$(SARCHAT_VLLM_PYTHON="$VLLM_PY" bash .ci/lmms_env.sh | tail -n 1)
echo "vllm_checks: lmms-eval ready in $(( $(date +%s) - start )) s: $LMMS_PY"
run_tests "SARCHAT_LMMS_PYTHON=$LMMS_PY" tests/test_real_lmms.py
lmms_rc=$status

# VLMEvalKit (ms-vlmeval, --no-deps, its own venv seeing the vLLM env's torch; stamped, about 10 s
# when built), then its test: its loader reads `sarchat export vlmevalkit`'s table
start=$(date +%s)
VLMEVAL_PY=$(SARCHAT_VLLM_PYTHON="$VLLM_PY" bash .ci/vlmeval_env.sh | tail -n 1)
echo "vllm_checks: VLMEvalKit ready in $(( $(date +%s) - start )) s: $VLMEVAL_PY"
run_tests "SARCHAT_VLMEVAL_PYTHON=$VLMEVAL_PY" tests/test_real_vlmeval.py
vlmeval_rc=$status
if [[ $rc -ne 0 ]]; then exit $rc; fi
if [[ $lmms_rc -ne 0 ]]; then exit $lmms_rc; fi
exit $vlmeval_rc
