#!/usr/bin/env bash
# The evidence plan (bench/plan.json) on a lent GPU, as one prepared call of at most 9 minutes.
#
# Prepare here, once (both folders are ignored by git and travel with `carry`):
#   mkdir -p data && cp ../shared/data/cifar10-jpeg.tar.gz data/          # 20 MB: the GPU machine reaches no network
#   (albumentations and its needs as Python 3.12 wheels in .whl/, as the device tool's README shows, where the
#    machine's Python lacks them)
# Then call the device tool's run with: command "bash bench/gpu_plan.sh", carry ["data", ".whl"], timeout_s 560.
# The records come back as $OUT/plan-results.tgz (bench/results/plan/*.json and summary.md): unpack it over
# bench/results/ here and commit. Runs that did not finish in time have records marked unfinished; the next call
# does not resume them (run folders stay on the machine, which starts bare), so keep JOBS x the runs' length in the budget.
set -uo pipefail
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch, albumentations; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'albumentations', albumentations.__version__)" || exit 1
# the input pipeline (Albumentations on the CPU cores) sets the pace on a GPU: several runs at once share the cores
timeout "${BUDGET_S:-480}" python3 bench/run_plan.py --data data/cifar10-jpeg.tar.gz --device cuda --jobs "${JOBS:-6}" \
  --runs /tmp/eva_runs ${ONLY:+--only $ONLY} 2>&1 | grep -v '^\s*$' | tail -n 200
python3 bench/run_plan.py --summary-only
if [ -n "${OUT:-}" ]; then tar czf "$OUT/plan-results.tgz" bench/results/plan bench/results/summary.md; fi
cat bench/results/summary.md
