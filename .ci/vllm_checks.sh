#!/usr/bin/env bash
# Real-vLLM checks for CI: build (or reuse) the CPU vLLM environment, then run tests/test_real_vllm.py
# with SARCHAT_VLLM_PYTHON pointing at it; then add lmms-eval to that env (.ci/lmms_env.sh) and run
# tests/test_real_lmms.py with SARCHAT_LMMS_PYTHON. Called from .ci/run after the normal suite, with
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

start=$(date +%s)
set +e
SARCHAT_VLLM_PYTHON="$VLLM_PY" "$PYTHON" -m pytest -q -p no:cacheprovider -rxXs tests/test_real_vllm.py
rc=$?
set -e
echo "vllm_checks: tests/test_real_vllm.py in $(( $(date +%s) - start )) s (exit $rc)"

# lmms-eval on top of the same env (stamped, about 1 s when already added), then its test
start=$(date +%s)
LMMS_PY=$(SARCHAT_VLLM_PYTHON="$VLLM_PY" bash .ci/lmms_env.sh | tail -n 1)
echo "vllm_checks: lmms-eval ready in $(( $(date +%s) - start )) s: $LMMS_PY"
start=$(date +%s)
set +e
SARCHAT_LMMS_PYTHON="$LMMS_PY" "$PYTHON" -m pytest -q -p no:cacheprovider -rxXs tests/test_real_lmms.py
lmms_rc=$?
set -e
echo "vllm_checks: tests/test_real_lmms.py in $(( $(date +%s) - start )) s (exit $lmms_rc)"
if [[ $rc -ne 0 ]]; then exit $rc; fi
exit $lmms_rc
