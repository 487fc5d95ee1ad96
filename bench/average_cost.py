"""What do weight averaging and Lookahead cost per training step on this CPU? (issue 20's levers)

bench/averaging.py's averages add work after each optimizer step: an exponential or equal-weight average
updates its copy of the weights (`AveragedModel.update_parameters`), and Lookahead syncs its slow weights with
the model's every 5 steps (`lookahead_step`). Timing whole steps with and without them (a first version of
this script) could not tell them apart: rounds of the same variant differed by up to 30%. So this script
times, in one run, each variant's extra work alone (ResNet18's weights, channels_last as `fit` lays them out
on CPUs; `--calls` calls each, median of `--rounds`), and a plain training step as `fit` runs it here (the
precision `precision='auto'` picks; batch 128 as `fast`, one synthetic batch), and gives the extra work as a
fraction of that step. It also compares AveragedModel's default equal-weight path with `get_swa_multi_avg_fn`
given explicitly (what averaging.py's `swa_model` does), in time and in the weights they end with.

    python bench/average_cost.py          # about 2 minutes on 2 cores

Writes bench/results/average-cost-cpu.json. Not timed: the BatchNorm statistics an average needs after each
epoch (`recompute_bn`, 50 batches; 25-36 s per epoch on the first machine, bench/README.md).
"""
from __future__ import annotations
import argparse, datetime, json, os, platform, statistics, time
from pathlib import Path

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel

from averaging import LOOKAHEAD_K, ema_model, lookahead_state, lookahead_step, swa_model  # bench/averaging.py
from eva_cam.core import autocast, cpu_has_bf16, resolve_precision
from eva_cam.resnet import ResNet18

CPU = torch.device('cpu')
PRECISION = resolve_precision('auto', CPU)  # as `fit` trains here
CL = torch.channels_last  # as `fit` lays out models and batches on CPUs


def step_seconds(model, xb, yb, steps: int) -> float:
    "Seconds per plain training step of `model` on the batch (SGD with Nesterov momentum, as `fast`)."
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    crit = nn.CrossEntropyLoss()
    t = time.perf_counter()
    for _ in range(steps):
        with autocast(CPU, PRECISION): loss = crit(model(xb), yb)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return (time.perf_counter() - t) / steps


def extra_work(model) -> tuple[dict, tuple]:
    "Each variant's work after an optimizer step, as a function of no arguments; and the two SWA averages."
    ema, swa, swa_default = ema_model(model, 0.998), swa_model(model), AveragedModel(model, use_buffers=False)
    la = lookahead_state(model, total_steps=10**9, k=1)  # k=1: every call syncs (a run syncs every 5th step)
    work = {'ema': lambda: ema.update_parameters(model), 'swa': lambda: swa.update_parameters(model),
            'swa_averagedmodel_default': lambda: swa_default.update_parameters(model),
            'lookahead_sync': lambda: lookahead_step(model, la)}
    return work, (swa, swa_default)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--bs', type=int, default=128, help='batch size of the plain step (default: 128, as fast)')
    p.add_argument('--steps', type=int, default=4, help='plain steps per round (default: %(default)s)')
    p.add_argument('--calls', type=int, default=20, help="calls of each variant's work a round (default: 20)")
    p.add_argument('--rounds', type=int, default=3, help='rounds (default: %(default)s)')
    p.add_argument('--out', type=Path, default=Path(__file__).parent/'results'/'average-cost-cpu.json')
    a = p.parse_args()
    load_before = os.getloadavg()
    torch.manual_seed(0)
    model = ResNet18().train().to(memory_format=CL)
    xb, yb = torch.randn(a.bs, 3, 32, 32).contiguous(memory_format=CL), torch.randint(0, 10, (a.bs,))
    work, (swa, swa_default) = extra_work(model)  # the two equal-weight averages see the same weights
    for f in work.values(): f(); f()  # the first call copies, the later ones average
    step_s, ms = [], {n: [] for n in work}
    step_seconds(model, xb, yb, 1)  # warm-up
    for r in range(a.rounds):
        step_s.append(step_seconds(model, xb, yb, a.steps))
        for n, f in work.items():
            t = time.perf_counter()
            for _ in range(a.calls): f()
            ms[n].append((time.perf_counter() - t) / a.calls * 1000)
        print(f"round {r + 1}/{a.rounds}: step {step_s[-1]:.2f} s; "
              + ', '.join(f"{n} {v[-1]:.1f} ms" for n, v in ms.items()), flush=True)
    step = statistics.median(step_s)
    swa_diff = max((x - y).abs().max().item()
                   for x, y in zip(swa.module.parameters(), swa_default.module.parameters()))
    per_step = {'ema': 1, 'swa': 1, 'swa_averagedmodel_default': 1, 'lookahead_sync': 1 / LOOKAHEAD_K}
    variants = {n: {'ms_per_call': statistics.median(v), 'calls_per_step': per_step[n],
                    'fraction_of_step': statistics.median(v) / 1000 * per_step[n] / step, 'ms_each_round': v}
                for n, v in ms.items()}
    res = {'what': "each variant's work after a training step, alone (ResNet18's weights, channels_last; "
                   "median ms per call) and as a fraction of a plain training step "
                   f"({PRECISION}, channels_last, SGD, batch of 32x32 images; median seconds)",
           'precision': PRECISION, 'step_seconds': step, 'step_seconds_each_round': step_s,
           'variants': variants, 'swa_max_difference_to_default': swa_diff, 'batch_size': a.bs,
           'steps_per_round': a.steps, 'calls_per_round': a.calls, 'rounds': a.rounds,
           'machine': platform.processor() or platform.machine(), 'cores': os.cpu_count(),
           'threads': torch.get_num_threads(), 'cpu_capability': torch.backends.cpu.get_cpu_capability(),
           'cpu_has_bf16': cpu_has_bf16(), 'torch': torch.__version__, 'load_average_before': load_before,
           'load_average_after': os.getloadavg(),
           'date': datetime.datetime.now().isoformat(timespec='seconds')}
    print(f"plain step: {step:.2f} s; swa and AveragedModel's default differ by at most {swa_diff:.2g}")
    for n, v in variants.items():
        print(f"{n}: {v['ms_per_call']:.1f} ms per call, {v['fraction_of_step']:.4f} of a step")
    a.out.write_text(json.dumps(res, indent=1) + '\n')
    print('wrote', a.out)


if __name__ == '__main__':
    main()
