#!/usr/bin/env bash
# Every GPU check in one run, for a borrowed GPU machine with no network (about 5 minutes):
#   bench/generation_engines.py and bench/vs_trl.py on a Qwen2.5-0.5B-shaped model (random weights,
#   bf16), bench/update_memory.py on it, bench/overlap.py with sampling on the GPU, then
#   tests/test_gpu.py, then the bf16 sampler/trainer gap and the off-policy speedup (bench/off_policy.py).
# Wheels that machine lacks (trl, datasets and their small deps) may sit in .whl/ (pip download
# --no-deps); .whl-extra/pyarrow*.whl is installed only if the machine's pyarrow is older than 24.
# Logs go to $OUT (default /tmp/gpu-check).
set -u
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
SITE=/tmp/verifrl-site
if ls .whl/*.whl >/dev/null 2>&1; then
    extra=""
    if ! python3 -c "import pyarrow, sys; sys.exit(int(pyarrow.__version__.split('.')[0]) < 24)" 2>/dev/null; then
        extra=$(ls .whl-extra/pyarrow*.whl 2>/dev/null)
    fi
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        .whl/*.whl $extra || exit 1
    export PYTHONPATH="$SITE"
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
{
    nvidia-smi -L
    python3 -c "import torch, transformers, trl, datasets, pyarrow; print('torch', torch.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__, '| datasets', datasets.__version__, '| pyarrow', pyarrow.__version__, '| cuda', torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/versions.log"

timeout "${ENGINES_TIMEOUT:-120}" python3 bench/generation_engines.py --device cuda --random-model qwen2.5-0.5b \
    --max-new-tokens 128 --repeats 2 --threads 4 --engines loop:1 loop:8 hf cb \
    --scratch /tmp/verifrl-vs-trl-gpu 2>&1 | grep -v "Loading weights" | tee "$OUT/engines_gpu.log"

timeout "${UPDATE_TIMEOUT:-60}" python3 bench/update_memory.py --device cuda --rows 64 \
    --scratch /tmp/verifrl-vs-trl-gpu 2>&1 | tail -1 | tee "$OUT/update_memory_gpu.log"

timeout "${VS_TRL_TIMEOUT:-300}" python3 bench/vs_trl.py --device cuda --random-model qwen2.5-0.5b \
    --prompts 8 --group 8 --max-new-tokens 128 --steps 3 --rounds 2 --threads 4 \
    --scratch /tmp/verifrl-vs-trl-gpu 2>&1 | tee "$OUT/vs_trl_gpu.log"

timeout "${OVERLAP_TIMEOUT:-150}" python3 bench/overlap.py --device cuda --steps 10 2>&1 \
    | tee "$OUT/overlap_gpu.log"

timeout "${TESTS_TIMEOUT:-240}" python3 -m pytest -q -p no:cacheprovider -s tests/test_gpu.py 2>&1 \
    | tee "$OUT/test_gpu.log"

# off-policy (docs/off-policy.md): the bf16 sampler/trainer gap of the loop engine on the GPU (5 steps
# with pi_old recomputed: offpolicy/* from metrics.jsonl), then synchronous vs off_policy_steps=1
timeout "${GAP_TIMEOUT:-120}" python3 -m verifrl train recipes/tiny-arith.yaml model.device=cuda trainer.steps=5 \
    trainer.recompute_old_logprobs=true eval.before=false data.num_test=8 checkpoint.save_final_model=false \
    logging.wandb=disabled logging.progress=false --run-dir /tmp/verifrl-gap-gpu >/dev/null 2>&1
python3 -c "import json; [print({k: round(v, 6) for k, v in json.loads(l).items() if k.startswith('offpolicy/')}) for l in open('/tmp/verifrl-gap-gpu/metrics.jsonl') if 'offpolicy/log_ratio_abs_mean' in l]" \
    2>&1 | tee "$OUT/sampler_gap_bf16_gpu.log"
timeout "${OFF_POLICY_TIMEOUT:-300}" python3 bench/off_policy.py --device cuda --steps 30 2>&1 | tail -1 \
    | tee "$OUT/off_policy_gpu.log"
