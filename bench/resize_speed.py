"""Does training on smaller images save time on this CPU? (issue 20: progressive resizing)

ResNet18's FLOPs fall with the square of the image side (its stages are convolutions, its head an adaptive average
pool), so a training step at side 24 does 56% of the work of one at 32, and at 16 a quarter. Whether the time falls
as much depends on how well the CPU kernels do on the smaller feature maps. This script times training steps
(forward, backward, SGD step, in the precision `fit` trains in on this CPU (bf16 autocast where it has bf16 hardware, else fp32)) on one synthetic batch at each side, in both
memory layouts (channels_last, which `fit` uses on CPUs since bench/cpu_step_speed.py, and contiguous NCHW), all
interleaved over several rounds so that a change of load hits them alike, and reports the median images/s of each and
its ratio to side 32 in channels_last, with the FLOPs per image from torch.utils.flop_counter.

    python bench/resize_speed.py                # about two minutes on 2 cores

Writes bench/results/resize-speed-cpu.json with the machine, torch version and load average before and after.
"""
from __future__ import annotations
import argparse, copy, datetime, json, os, platform, statistics, time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from eva_cam.core import autocast, resolve_precision
from eva_cam.resnet import ResNet18

CPU = torch.device('cpu')
PRECISION = resolve_precision('auto', CPU)  # as `fit` trains here: bf16 where the CPU has bf16 hardware, else fp32


def train_flops(side: int) -> float:
    "FLOPs (2 per multiply-add) of one image of `side` pixels through a ResNet18 training step: forward and backward."
    m, x = ResNet18(), torch.randn(2, 3, side, side)
    with FlopCounterMode(display=False) as fc: m(x).sum().backward()
    return fc.get_total_flops() / 2


def step_seconds(model, opt, crit, xb, yb, steps: int) -> float:
    "Seconds per training step, the mean of `steps` steps after one untimed step."
    def step():
        with autocast(CPU, PRECISION): loss = crit(model(xb), yb)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    step()
    t = time.perf_counter()
    for _ in range(steps): step()
    return (time.perf_counter() - t) / steps


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sides', type=int, nargs='+', default=[32, 24, 16], help='image sides to time (default: %(default)s)')
    p.add_argument('--bs', type=int, default=128, help='batch size (default: %(default)s, as fast)')
    p.add_argument('--steps', type=int, default=4, help='timed steps per side and round (default: %(default)s)')
    p.add_argument('--rounds', type=int, default=5, help='rounds over all sides (default: %(default)s)')
    p.add_argument('--out', type=Path, default=Path(__file__).parent/'results'/'resize-speed-cpu.json')
    a = p.parse_args()
    if 32 not in a.sides: p.error('--sides must include 32, the side the ratios are taken against')
    load_before = os.getloadavg()
    torch.manual_seed(0)
    crit, yb = nn.CrossEntropyLoss(), torch.randint(0, 10, (a.bs,))
    base = ResNet18().train()
    layouts = {'channels_last': torch.channels_last, 'contiguous': torch.contiguous_format}
    models = {k: copy.deepcopy(base).to(memory_format=f) for k, f in layouts.items()}
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}
    batches = {(s, k): torch.randn(a.bs, 3, s, s).contiguous(memory_format=f) for s in a.sides for k, f in layouts.items()}
    secs = {key: [] for key in batches}
    for r in range(a.rounds):
        for (s, k), xb in batches.items(): secs[s, k].append(step_seconds(models[k], opts[k], crit, xb, yb, a.steps))
        print(f"round {r + 1}/{a.rounds}: " + ', '.join(f"{s}px {k} {a.bs / v[-1]:.0f}" for (s, k), v in secs.items()) + ' img/s')
    rate = {key: a.bs / statistics.median(v) for key, v in secs.items()}
    ref = rate[32, 'channels_last']
    flops = {s: train_flops(s) for s in a.sides}
    res = {'what': f'ResNet18 training steps ({PRECISION}, as precision="auto" trains here; SGD) on one synthetic batch per image side and memory layout; median over rounds', 'precision': PRECISION,
           'sides': {f"{s}/{k}": {'images_per_s': rate[s, k], 'time_ratio_to_32_channels_last': ref / rate[s, k],
                                  'flops_per_image': flops[s], 'flop_ratio_to_32': flops[s] / flops[32],
                                  'images_per_s_each_round': [a.bs / t for t in secs[s, k]]} for s, k in batches},
           'batch_size': a.bs, 'steps_per_round': a.steps, 'rounds': a.rounds,
           'machine': platform.processor() or platform.machine(), 'cores': os.cpu_count(), 'threads': torch.get_num_threads(),
           'torch': torch.__version__, 'load_average_before': load_before, 'load_average_after': os.getloadavg(),
           'date': datetime.datetime.now().isoformat(timespec='seconds')}
    for s, k in batches:
        print(f"side {s} {k}: {rate[s, k]:.1f} images/s, time {ref / rate[s, k]:.2f} x side 32 channels_last's, FLOPs {flops[s] / flops[32]:.2f} x")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + '\n')
    print(f"wrote {a.out}")


if __name__ == '__main__':
    main()
