"""How fast does eva_cam train ResNet18 on this machine's CPU, and where does the time go?

One run measures, for fp32 and bf16 autocast:
  - the model alone: a training step (forward, backward, SGD step) on a synthetic batch;
  - the full pipeline: decoded uint8 images -> Albumentations ('standard') -> DataLoader -> eva_cam.train.train_epoch
    (the loop fit uses: the same step, plus its progress bar and loss checks);
  - the batched pipeline: the same images and transforms, drawn per batch in the training process by
    eva_cam.augment.DeviceLoader (what a recipe run uses), -> train_epoch;
  - evaluation (forward only, inference_mode) on a synthetic batch;
and the bf16 matrix-multiply peak of this CPU (a large torch.matmul), to say what fraction of it training reaches.
FLOPs per image are counted with torch.utils.flop_counter (2 FLOPs per multiply-add, like the matmul peak).

    python bench/train_speed.py                 # about 3-5 minutes on 2 cores
    python bench/train_speed.py --steps 4       # a quick look

Writes bench/results/train-speed-cpu.json. Timings on a machine shared with other work are lower
bounds of what the CPU can do; the load average before and after is recorded with them.
"""
from __future__ import annotations
import argparse, datetime, json, os, platform, time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from eva_cam.data import default_workers, find_local, get_dataloaders, load_cifar10
from eva_cam.resnet import ResNet18
from eva_cam.core import autocast, cpu_has_bf16
from eva_cam.core import device_name
from eva_cam.train import train_epoch
from eva_cam.augment import DeviceLoader

CPU = torch.device('cpu')


def flops_per_image(train: bool) -> float:
    "FLOPs of one 32x32 image through ResNet18: forward only, or forward + backward."
    m = ResNet18(); x = torch.randn(2, 3, 32, 32)
    with FlopCounterMode(display=False) as fc:
        out = m(x)
        if train: out.sum().backward()
    return fc.get_total_flops() / 2


def matmul_peak(dtype: torch.dtype, n: int = 4096, reps: int = 5) -> float:
    "FLOP/s of an n x n matmul in `dtype` (best of `reps`)."
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)
    best = float('inf')
    for _ in range(reps):
        t = time.perf_counter(); torch.matmul(a, b); best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _step(model, opt, crit, xb, yb, precision):
    with autocast(CPU, precision):
        loss = crit(model(xb), yb)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()


def model_train_speed(precision: str, bs: int, steps: int, warmup: int = 2) -> float:
    "Images/s of training steps on one synthetic batch (no data loading)."
    torch.manual_seed(0)
    model = ResNet18().train(); opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9); crit = nn.CrossEntropyLoss()
    xb, yb = torch.randn(bs, 3, 32, 32), torch.randint(0, 10, (bs,))
    for _ in range(warmup): _step(model, opt, crit, xb, yb, precision)
    t = time.perf_counter()
    for _ in range(steps): _step(model, opt, crit, xb, yb, precision)
    return bs * steps / (time.perf_counter() - t)


def pipeline_train_speed(data, precision: str, bs: int, steps: int, num_workers: int, warmup: int = 2) -> float:
    "Images/s of eva_cam's `train_epoch` fed by the real DataLoader (Albumentations 'standard' transforms)."
    torch.manual_seed(0)
    model = ResNet18(); opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    warm_dl, _ = get_dataloaders(data, 'standard', batch_size=bs, num_workers=num_workers, limit=bs * warmup)
    train_epoch(model, warm_dl, opt, device=CPU, precision=precision, desc='warm-up')
    dl, _ = get_dataloaders(data, 'standard', batch_size=bs, num_workers=num_workers, limit=bs * steps)
    t = time.perf_counter()
    train_epoch(model, dl, opt, device=CPU, precision=precision, desc=f'pipeline {precision}')
    return len(dl.dataset) / (time.perf_counter() - t)


def batched_train_speed(data, precision: str, bs: int, steps: int, warmup: int = 2) -> float:
    "Images/s of `train_epoch` fed by a CPU `DeviceLoader` (the same transforms, a batch at a time)."
    torch.manual_seed(0)
    model = ResNet18(); opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = lambda n: DeviceLoader(get_dataloaders(data, 'standard', batch_size=bs, num_workers=0,
                                                    limit=bs * n)[0].dataset, 'standard', bs, device=CPU)
    train_epoch(model, loader(warmup), opt, device=CPU, precision=precision, desc='warm-up')
    dl = loader(steps)
    t = time.perf_counter()
    train_epoch(model, dl, opt, device=CPU, precision=precision, desc=f'batched {precision}')
    return len(dl.x) / (time.perf_counter() - t)


def loader_speed(data, bs: int, batches: int, num_workers: int) -> float:
    "Images/s of the DataLoader alone (decode-free: uint8 array -> Albumentations -> tensors)."
    dl, _ = get_dataloaders(data, 'standard', batch_size=bs, num_workers=num_workers, limit=bs * batches)
    t, n = time.perf_counter(), 0
    for xb, _ in dl: n += len(xb)
    return n / (time.perf_counter() - t)


@torch.inference_mode()
def eval_speed(precision: str, bs: int, steps: int, warmup: int = 2) -> float:
    "Images/s of forward passes in eval mode on a synthetic batch."
    model = ResNet18().eval(); xb = torch.randn(bs, 3, 32, 32)
    for _ in range(warmup):
        with autocast(CPU, precision): model(xb)
    t = time.perf_counter()
    for _ in range(steps):
        with autocast(CPU, precision): model(xb)
    return bs * steps / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--bs', type=int, default=64, help='training batch size')
    p.add_argument('--steps', type=int, default=10, help='timed batches per measurement (after 2 warm-up batches)')
    p.add_argument('--data', default=None, help="CIFAR-10 source for the pipeline (default: the full copy if found, else 'sample')")
    p.add_argument('--matmul-n', type=int, default=4096, help='side of the square matmul that measures the peak (1024 where bf16 is emulated: 4096 takes minutes)')
    p.add_argument('--out', default=str(Path(__file__).parent/'results'/'train-speed-cpu.json'))
    a = p.parse_args()
    t_start = time.time(); load_before = os.getloadavg()
    src = a.data or (str(find_local()) if find_local() else 'sample')
    data = load_cifar10(src)
    nw = default_workers()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, data {data}, {nw} loader worker(s)")

    res = {'flops_forward_per_image': flops_per_image(False), 'flops_train_per_image': flops_per_image(True)}
    res['matmul_peak_flops'] = {'bf16': matmul_peak(torch.bfloat16, a.matmul_n), 'fp32': matmul_peak(torch.float32, a.matmul_n)}
    print(f"matmul peak: bf16 {res['matmul_peak_flops']['bf16']/1e9:.0f} GFLOP/s, fp32 {res['matmul_peak_flops']['fp32']/1e9:.0f} GFLOP/s")
    res['loader_images_per_s'] = loader_speed(data, a.bs, a.steps, nw)
    print(f"DataLoader alone: {res['loader_images_per_s']:.0f} images/s")
    for prec in ('fp32', 'bf16'):
        r = {'model_train': model_train_speed(prec, a.bs, a.steps),
             'pipeline_train': pipeline_train_speed(data, prec, a.bs, a.steps, nw),
             'batched_train': batched_train_speed(data, prec, a.bs, a.steps),
             'eval': eval_speed(prec, 2 * a.bs, a.steps)}
        r['pipeline_over_model'] = r['pipeline_train'] / r['model_train']
        r['batched_over_model'] = r['batched_train'] / r['model_train']
        r['eval_over_train'] = r['eval'] / r['model_train']
        r['train_flops_per_s'] = r['model_train'] * res['flops_train_per_image']
        r['fraction_of_bf16_matmul_peak'] = r['train_flops_per_s'] / res['matmul_peak_flops']['bf16']
        res[prec] = r
        print(f"{prec}: model {r['model_train']:.1f} img/s, pipeline {r['pipeline_train']:.1f} img/s "
              f"(x{r['pipeline_over_model']:.2f}), batched {r['batched_train']:.1f} img/s "
              f"(x{r['batched_over_model']:.2f}), eval {r['eval']:.1f} img/s (x{r['eval_over_train']:.1f} train), "
              f"{r['train_flops_per_s']/1e9:.0f} GFLOP/s = {r['fraction_of_bf16_matmul_peak']:.1%} of the bf16 matmul peak")
    res['bf16_over_fp32'] = {k: res['bf16'][k] / res['fp32'][k] for k in ('model_train', 'pipeline_train', 'batched_train', 'eval')}
    print("bf16/fp32: " + ", ".join(f"{k} x{v:.2f}" for k, v in res['bf16_over_fp32'].items()))
    epoch_s = 50_000 / max(res['bf16']['pipeline_train'], res['bf16']['batched_train'])
    print(f"one epoch of 50,000 images in bf16 through the faster pipeline: about {epoch_s/60:.0f} minutes")
    res.update(batch_size=a.bs, steps=a.steps, matmul_n=a.matmul_n, loader_workers=nw, data_source=data.source, cpu=device_name(CPU),
               cpu_capability=torch.backends.cpu.get_cpu_capability(), cpu_has_bf16=cpu_has_bf16(),
               cores=os.cpu_count(), threads=torch.get_num_threads(), torch_version=torch.__version__,
               python_version=platform.python_version(), estimated_epoch_seconds_bf16=epoch_s,
               loadavg_before=load_before, loadavg_after=os.getloadavg(), seconds=time.time() - t_start,
               date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {a.out} ({res['seconds']:.0f} s; load average before {load_before[0]:.1f}, after {res['loadavg_after'][0]:.1f})")


if __name__ == '__main__':
    main()
