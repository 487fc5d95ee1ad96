#!/usr/bin/env bash
# The evidence plan (bench/plan.json) on a lent GPU, as one prepared call of at most 10 minutes.
#
# Prepare here, once (both folders are ignored by git and travel with `carry`):
#   mkdir -p data && cp ../shared/data/cifar10-jpeg.tar.gz data/          # 20 MB: the GPU machine reaches no network
#   albumentations 2.0.8 and what it needs that the machine's image lacks, as Python 3.12 wheels in .whl/
#   (albucore, pydantic, pydantic_core, annotated_types, typing_inspection, typing_extensions, simsimd, stringzilla;
#   the device tool's README shows the pip download line)
# Then call the device tool's run with: command "bash bench/gpu_plan.sh", carry ["data", ".whl"], timeout_s 600.
#
# Ten runs at a time (JOBS=10; with 10 the H200 was 97-100% busy): on CUDA the training batches are made on the GPU (eva_cam.augment.DeviceLoader),
# so each run needs one CPU core, and the GPU, which one small-batch run leaves mostly idle, is shared.
# BUDGET_S later, `timeout` stops the runs that have not finished; each writes a record marked unfinished.
# What comes back under $OUT: plan-results.tgz (bench/results/plan/*.json, summary.md, and each run folder's
# json files and curves), plan.log, and the best finished fast15 run's weights (fp16 state dict, in 15 MB parts:
# `cat weights-*.part* > weights.pt`). Unpack plan-results.tgz over the repo here and commit the records.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS="${WHEELS-.whl}"  # WHEELS= (empty) for a dry run here, where the Python 3.12 wheels do not fit
if [ -n "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1 TQDM_DISABLE=1 OMP_NUM_THREADS=2 EVA_CAM_CACHE=/tmp/eva_cache
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, albumentations, eva_cam.train; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'albumentations', albumentations.__version__)" || exit 1
python3 -c "from eva_cam.data import load_cifar10; d = load_cifar10('data/cifar10-jpeg.tar.gz'); print('data', d.x_train.shape, d.x_test.shape)" || exit 1  # decoded once, cached
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 30 > "$OUT/gpu-use.csv" 2>&1 &
# the records so far, every 20 s: if the call is cut short (the session's device time), what finished still comes back
(while sleep 20; do tar czf "$OUT/.r.tgz" bench/results/plan 2>/dev/null && mv "$OUT/.r.tgz" "$OUT/plan-results.tgz"; done) &
timeout "${BUDGET_S:-500}" python3 bench/run_plan.py --data data/cifar10-jpeg.tar.gz --device "${DEVICE:-cuda}" --jobs "${JOBS:-10}" ${PLAN:+--plan $PLAN} \
  --runs /tmp/eva_runs ${ONLY:+--only $ONLY} > "$OUT/plan.log" 2>&1
echo "run_plan exit $?"
kill %1 %2 2>/dev/null; wait
tr "\r" "\n" < "$OUT/plan.log" | grep -E "^epoch +[0-9]+/[0-9]+ +train|Error|Traceback|failed|^[a-z0-9.-]+-seed[0-9]+: " | tail -n 80
python3 bench/run_plan.py --summary-only ${PLAN:+--plan $PLAN}
# the best fast15 run finished in this call (its folder is here): its final weights, for the package (issue 24)
python3 - "$OUT" <<'PY'
import json, sys, torch
from pathlib import Path
recs = [json.loads(p.read_text()) for p in Path('bench/results/plan').glob('fast15-seed*.json')]
done = sorted((r for r in recs if r.get('finished') and (Path(r['run_folder'])/'checkpoint.pt').is_file()), key=lambda r: r['final_test_acc'])
if not done: sys.exit(print('no fast15 run finished in this call: no weights'))
r = done[-1]
sd = torch.load(Path(r['run_folder'])/'checkpoint.pt', map_location='cpu', weights_only=True)['model']
sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
f = Path(sys.argv[1])/f"weights-{r['name']}.pt"; torch.save(sd, f)
data = f.read_bytes(); f.unlink()
for i in range(0, len(data), 15_000_000): (f.parent/f"{f.name}.part{i // 15_000_000}").write_bytes(data[i:i + 15_000_000])
print('weights of', r['name'], r['final_test_acc'], len(data), 'bytes')
PY
# chapter 05's report on a GPU, never tested there before: the model on CUDA, the misclassified images on the CPU
# (faithfulness moves each batch to the model since session 20); a failure is printed, the records still come back
timeout 90 python3 - <<'PY' 2>&1 | tail -n 4
import json, time
from pathlib import Path
from eva_cam.report import report_figures
recs = [json.loads(p.read_text()) for p in sorted(Path('bench/results/plan').glob('*.json'))]
runs = [Path(r['run_folder']) for r in recs if r.get('finished') and Path(r.get('run_folder', '/none')).is_dir()]
if not runs: raise SystemExit('report on cuda: no finished run folder in this call')
t0 = time.time(); r = report_figures(runs[0], device='cuda')
print('report on cuda:', runs[0].name, {n: round(s['insertion_auc'] - s['deletion_auc'], 3) for n, s in {**r['layer_scores'], **r['random_scores']}.items()}, f'{time.time() - t0:.0f} s')
PY
tar czf "$OUT/plan-results.tgz" bench/results/plan bench/results/summary.md
(cd /tmp && tar czf "$OUT/run-folders.tgz" --exclude='*.pt' eva_runs) 2>/dev/null
cat bench/results/summary.md
