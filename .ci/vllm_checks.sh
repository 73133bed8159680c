#!/usr/bin/env bash
# Real-vLLM checks for CI: build (or reuse) the CPU vLLM environment, then run tests/test_real_vllm.py
# with SARCHAT_VLLM_PYTHON pointing at it; then add lmms-eval to that env (.ci/lmms_env.sh) and run
# tests/test_real_lmms.py with SARCHAT_LMMS_PYTHON; then VLMEvalKit in a venv of its own on top of
# that env (.ci/vlmeval_env.sh) and tests/test_real_vlmeval.py with SARCHAT_VLMEVAL_PYTHON. Called from .ci/run beside the static checks and the suite, with
# the project's own python (the one that has Beam and pytest) as $PYTHON or `python` on PATH.
#
#   bash .ci/vllm_checks.sh            # exit status: the first failing pytest's (5, "no tests ran",
#                                      # counts as failure), else 0
#   bash .ci/vllm_checks.sh envs FILE  # only build the environments (their pythons into FILE) ...
#   bash .ci/vllm_checks.sh tests FILE # ... then, later, only the tests
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
phase=${1:-all}   # envs FILE: build the three environments, write their pythons to FILE; tests FILE: run
                  # the three test files with the pythons FILE names; all (no argument): both

# envs: vLLM (cached, about 10 s), lmms-eval added to it (stamped, about 1 s), VLMEvalKit in a venv
# of its own seeing the vLLM env's torch (stamped, about 10 s when built). .ci/run builds them while
# it installs the project, before any test uses the vLLM env.
build_envs() {
  local start
  start=$(date +%s)
  VLLM_PY=$(bash .ci/vllm_env.sh | tail -n 1)
  echo "vllm_checks: vLLM environment ready in $(( $(date +%s) - start )) s: $VLLM_PY"
  start=$(date +%s)
  LMMS_PY=$(SARCHAT_VLLM_PYTHON="$VLLM_PY" bash .ci/lmms_env.sh | tail -n 1)
  echo "vllm_checks: lmms-eval ready in $(( $(date +%s) - start )) s: $LMMS_PY"
  start=$(date +%s)
  VLMEVAL_PY=$(SARCHAT_VLLM_PYTHON="$VLLM_PY" bash .ci/vlmeval_env.sh | tail -n 1)
  echo "vllm_checks: VLMEvalKit ready in $(( $(date +%s) - start )) s: $VLMEVAL_PY"
}

# run_tests VAR=PYTHON FILE [PYTEST ARGS]: one real-engine test file with its interpreter named in VAR; prints
# the time and leaves pytest's exit status in $status (never stops the script, so every file runs).
run_tests() {
  local t0; t0=$(date +%s)
  set +e
  env "$1" "$PYTHON" -m pytest -q -p no:cacheprovider -rxXs "${@:3}" "$2"
  status=$?
  set -e
  echo "vllm_checks: $2 in $(( $(date +%s) - t0 )) s (exit $status)"
}

case $phase in
  envs)
    build_envs
    printf 'VLLM_PY=%q\nLMMS_PY=%q\nVLMEVAL_PY=%q\n' "$VLLM_PY" "$LMMS_PY" "$VLMEVAL_PY" >"$2"
    exit 0 ;;
  tests) . "$2" ;;
  all) build_envs ;;
  *) echo "usage: bash .ci/vllm_checks.sh [envs FILE | tests FILE]" >&2; exit 2 ;;
esac

# one worker: two at a time (-n 2 --dist loadgroup, the file's two xdist groups) took 574 s on a quiet
# 2-core machine against 478 s for one, each engine's threads competing for the same two cores
run_tests "SARCHAT_VLLM_PYTHON=$VLLM_PY" tests/test_real_vllm.py
rc=$status
run_tests "SARCHAT_LMMS_PYTHON=$LMMS_PY" tests/test_real_lmms.py
lmms_rc=$status
# its loader reads `sarchat export vlmevalkit`'s table
run_tests "SARCHAT_VLMEVAL_PYTHON=$VLMEVAL_PY" tests/test_real_vlmeval.py
vlmeval_rc=$status
if [[ $rc -ne 0 ]]; then exit $rc; fi
if [[ $lmms_rc -ne 0 ]]; then exit $lmms_rc; fi
exit $vlmeval_rc
