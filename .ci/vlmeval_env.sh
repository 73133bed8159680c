#!/usr/bin/env bash
# Build (or reuse) a VLMEvalKit environment for tests/test_real_vlmeval.py; the LAST line printed is
# the python to use:
#     PY=$(bash .ci/vlmeval_env.sh | tail -n 1)
#     SARCHAT_VLMEVAL_PYTHON=$PY python -m pytest tests/test_real_vlmeval.py
#
# Where: ${SARCHAT_VLMEVAL_ENV:-$HOME/.cache/sarchat/vlmeval-venv}, a venv of its own (never the
# project's env, nor the vLLM env: nothing is installed into either). VLMEvalKit is PyPI's
# ms-vlmeval==$VLMEVAL_VERSION, installed with --no-deps: its metadata asks for some 70 packages
# (torch with CUDA, sentence-transformers, lpips, ...), several GiB, none of which reading a custom
# dataset needs. What `from vlmeval.dataset import build_dataset` does import (vlmeval's package
# __init__ files import every dataset and model module) is torch, torchvision, transformers,
# opencv, openai, requests, huggingface_hub, pillow and numpy, which the CPU vLLM env has, plus the
# small pure packages of VLMEVAL_NEEDS below. So the venv sees the vLLM env's packages through a .pth
# file listing its site-packages AFTER the venv's own (.ci/vllm_env.sh builds that env; with
# SARCHAT_VLLM_PYTHON set, as .ci/vllm_checks.sh does, it is used as it is), and installs
# VLMEVAL_NEEDS pinned, each with --no-deps. The list was found by importing
# vlmeval.dataset and vlmeval.smp and adding what was missing until the import succeeded.
#
# Idempotent: the venv keeps a stamp, the sha256 of this file and of the vLLM env's stamp, written
# only after the full import check passed; a matching stamp and the installed ms-vlmeval version
# (a metadata read, well under a second) mean nothing is installed. The full import check (vlmeval
# with torch: 20 s to a minute on this 2-core machine) runs only when the venv is built; the test
# imports the same modules and names the failure if the venv broke since.
# A rebuilt vLLM env changes the stamp, and this venv is rebuilt (about 4 min here, first time).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ENV_DIR=${SARCHAT_VLMEVAL_ENV:-$HOME/.cache/sarchat/vlmeval-venv}
VLMEVAL_VERSION=0.0.20
VLMEVAL_NEEDS=(
  "pandas==3.1.1" "python-dateutil==4.0.0" "pytz==2026.6" "tzdata==2026.6" "six==1.17.0"
  "tabulate==0.10.0" "termcolor==3.3.0" "validators==0.36.0" "sty==1.0.6" "portalocker==4.4.2"
  "datasets==5.2.0" "dill==0.4.1" "xxhash==4.1.0" "multiprocess==0.70.19" "timeout-decorator==0.5.0"
  "levenshtein==0.27.5" "rapidfuzz==3.14.6" "joblib==1.6.0" "decord==0.6.0" "jieba==0.42.1"
  "nltk==3.10.4" "rouge==1.0.1" "math-verify==0.9.0" "latex2sympy2-extended==1.11.0"
  "antlr4-python3-runtime==4.13.2" "pylatexenc==2.11" "imageio==2.38.2" "json-repair==0.64.6"
  "num2words==0.5.14" "scikit-learn==1.9.1" "threadpoolctl==3.8.0" "narwhals==2.29.0"
  "accelerate==1.16.0" "qwen-vl-utils==0.0.14"
)
CHECK='from vlmeval.dataset import build_dataset; from vlmeval.smp import dump, load, get_pred_file_path'
QUICK_CHECK="from importlib.metadata import version; assert version('ms-vlmeval') == '$VLMEVAL_VERSION'"

log() { echo "vlmeval_env: $*" >&2; }

VLLM_PY=${SARCHAT_VLLM_PYTHON:-$(bash "$HERE/vllm_env.sh" | tail -n 1)}
VLLM_DIR=$(cd "$(dirname "$VLLM_PY")/.." && pwd)
VLLM_SITE=$("$VLLM_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
RECIPE_HASH=$( { cat "$HERE/vlmeval_env.sh"; cat "$VLLM_DIR/.sarchat-recipe" 2>/dev/null || true; echo "$VLLM_SITE"; } \
               | sha256sum | cut -c1-16)
STAMP="$ENV_DIR/.sarchat-vlmeval-recipe"
PY="$ENV_DIR/bin/python"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$RECIPE_HASH" ]] && "$PY" -c "$QUICK_CHECK" >/dev/null 2>&1; then
  log "reusing $ENV_DIR (recipe $RECIPE_HASH)"
  echo "$PY"
  exit 0
fi

START=$(date +%s)
log "building $ENV_DIR (recipe $RECIPE_HASH) on the vLLM env $VLLM_DIR"
rm -rf "$ENV_DIR"
mkdir -p "$(dirname "$ENV_DIR")"
# the vLLM env's base interpreter (same version), so that env's compiled packages load here
"$VLLM_PY" -m venv "$ENV_DIR"
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$VLLM_SITE" > "$SITE/zz_sarchat_vllm_env.pth"   # after the venv's own site-packages
"$PY" -m pip install -q --disable-pip-version-check --no-deps "ms-vlmeval==$VLMEVAL_VERSION" "${VLMEVAL_NEEDS[@]}" >&2
"$PY" -c "$CHECK" >&2
echo "$RECIPE_HASH" > "$STAMP"
log "built in $(( $(date +%s) - START )) s"
echo "$PY"
