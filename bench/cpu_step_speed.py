"""Which memory layout and compilation train ResNet18 fastest on this CPU? (issue 20: CPU time)

Before this script `fit` put the model and batches in the channels_last layout on CUDA only (it now does on CPUs too,
from this script's figures), and it compiles only when a recipe says `compile=True`. This script times training steps (forward,
backward, SGD step, in the precision `fast` trains in on this CPU (bf16 autocast where it has bf16 hardware, else fp32); batch 128, one synthetic batch) in three ways, in one
run, interleaved over rounds so that a change of load hits all alike:

  - eager: contiguous NCHW, as `fit` ran on a CPU before;
  - channels_last: model and batch in the channels_last layout, as `fit` runs on CUDA;
  - compiled: `torch.compile(model)` (the default inductor backend), NCHW; its compile time is reported apart;
  - compiled_channels_last: both.

    python bench/cpu_step_speed.py          # a few minutes on 2 cores (compiling takes most of it)

Writes bench/results/cpu-step-speed.json: median images/s per variant, the ratio to eager, the maximum difference
of the first step's loss against eager (the same weights and batch), compile seconds, machine, torch, load.
"""
from __future__ import annotations
import argparse, copy, datetime, json, os, platform, statistics, time
from pathlib import Path

import torch
import torch.nn as nn

from eva_cam.core import autocast, resolve_precision
from eva_cam.resnet import ResNet18

CPU = torch.device('cpu')
PRECISION = resolve_precision('auto', CPU)  # as `fit` trains here: bf16 where the CPU has bf16 hardware, else fp32


def make_step(model, opt, crit, xb, yb):
    "One training step of `model` on the batch; returns the loss."
    def step():
        with autocast(CPU, PRECISION): loss = crit(model(xb), yb)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        return loss.item()
    return step


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--bs', type=int, default=128, help='batch size (default: %(default)s, as fast)')
    p.add_argument('--steps', type=int, default=4, help='timed steps per variant and round (default: %(default)s)')
    p.add_argument('--rounds', type=int, default=7, help='rounds over all variants (default: %(default)s)')
    p.add_argument('--out', type=Path, default=Path(__file__).parent/'results'/'cpu-step-speed.json')
    a = p.parse_args()
    load_before = os.getloadavg()
    torch.manual_seed(0)
    base, crit = ResNet18().train(), nn.CrossEntropyLoss()
    xb, yb = torch.randn(a.bs, 3, 32, 32), torch.randint(0, 10, (a.bs,))
    steps, first_loss, compile_s = {}, {}, {}
    for name in ('eager', 'channels_last', 'compiled', 'compiled_channels_last'):
        model = copy.deepcopy(base)
        x = xb
        if name.endswith('channels_last'): model, x = model.to(memory_format=torch.channels_last), xb.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        run = torch.compile(model) if name.startswith('compiled') else model
        steps[name] = make_step(run, opt, crit, x, yb)
        t = time.perf_counter(); first_loss[name] = steps[name]()  # the same weights and batch: the first losses agree
        if name.startswith('compiled'): compile_s[name] = time.perf_counter() - t
        steps[name]()  # warm-up (a compiled model may recompile on its second call)
        print(f"{name}: first loss {first_loss[name]:.5f}" + (f", compiled in {compile_s[name]:.0f} s" if name in compile_s else ''))
    secs = {k: [] for k in steps}
    for r in range(a.rounds):
        for name, step in steps.items():
            t = time.perf_counter()
            for _ in range(a.steps): step()
            secs[name].append((time.perf_counter() - t) / a.steps)
        print(f"round {r + 1}/{a.rounds}: " + ', '.join(f"{k} {a.bs / v[-1]:.1f} img/s" for k, v in secs.items()))
    rate = {k: a.bs / statistics.median(v) for k, v in secs.items()}
    res = {'what': f'ResNet18 training steps ({PRECISION}, as precision="auto" trains here; SGD, batch of 32x32 images) per variant; median over rounds', 'precision': PRECISION,
           'variants': {k: {'images_per_s': rate[k], 'speed_ratio_to_eager': rate[k] / rate['eager'],
                            'first_loss_difference_to_eager': abs(first_loss[k] - first_loss['eager']),
                            'images_per_s_each_round': [a.bs / t for t in secs[k]]} for k in steps},
           'compile_seconds': compile_s, 'batch_size': a.bs, 'steps_per_round': a.steps, 'rounds': a.rounds,
           'machine': platform.processor() or platform.machine(), 'cores': os.cpu_count(), 'threads': torch.get_num_threads(),
           'torch': torch.__version__, 'load_average_before': load_before, 'load_average_after': os.getloadavg(),
           'date': datetime.datetime.now().isoformat(timespec='seconds')}
    for k in steps: print(f"{k}: {rate[k]:.1f} images/s, {rate[k] / rate['eager']:.2f} x eager")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + '\n')
    print(f"wrote {a.out}")


if __name__ == '__main__':
    main()
