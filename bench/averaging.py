"""Weight averaging on a recipe: an exponential average (EMA), SWA over the last epochs, or Lookahead.

Evidence (bench/README.md, "Weight averaging" and "fast8-lookahead"; the records under bench/results/):
- EMA, decay 0.998, over `fast`'s 8 epochs (fast8-ema998-cpu.json): 11.7 points ahead of the trained weights
  after epoch 2, behind at the end (86.66% against 86.97%): one-cycle's anneal already averages.
- BatchNorm statistics averaged with the weights break the average while the weights move fast (20.96% after
  epoch 2; 74.40% with statistics measured again; fast8-ema998-bn-cpu.json). So each average here has its
  statistics recomputed on 50 training batches before it is tested.
- Lookahead on `fast8` (plan/fast8-lookahead-seed0.json): 86.76%, 0.16 points below `fast8`'s mean of 3 seeds.
- Cost on a 2-core CPU (average-cost-cpu.json, bench/average_cost.py): 0.20% of a step for an average's
  update, 0.06% for Lookahead's syncs; recomputing the statistics 25-36 s an epoch.
No recipe keeps an average, so they live here, on eva_cam's public training step, and not in `eva_cam.train`.

    python bench/averaging.py --recipe fast --epochs 8 --ema 0.998 --data ../shared/data/cifar10-jpeg.tar.gz
    python bench/averaging.py --recipe fast --epochs 15 --swa-epochs 3 --out runs/fast15-swa3
    python bench/averaging.py --recipe fast --epochs 8 --lookahead 0.774 --data sample --limit 256

The run folder holds what `eva_cam.run.train_run` writes (config.json, checkpoint.pt, history.json,
metrics.json, curves.png), so bench/run_plan.py records it alike; the run's model, its test accuracy and flip
TTA are the average's, and metrics.json adds the trained weights' own accuracy (`final_raw_test_acc`, and per
epoch `raw_test_acc`).
checkpoint.pt holds the run's model alone: a stopped run starts again from its first epoch (no exact resume).
"""
from __future__ import annotations
import argparse, datetime, json, math, platform, subprocess, time
from itertools import islice
from pathlib import Path

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import OneCycleLR, ReduceLROnPlateau
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, get_swa_multi_avg_fn, update_bn
from tqdm.auto import tqdm

from eva_cam.augment import ProgressiveResize
from eva_cam.core import atomic_write, autocast, cpu_has_bf16, device_name, get_device, grad_scaler, is_int
from eva_cam.core import is_number, resolve_precision, set_seed
from eva_cam.data import Cifar10, check_limit, load_cifar10, reseed
from eva_cam.resnet import make_model
from eva_cam.run import REPORTED_ACCURACY, RUN_FILES, get_recipe, lock_run_folder, recipe_dataloaders
from eva_cam.train import History, evaluate, make_optimizer, make_scheduler, plot_history, save_checkpoint
from eva_cam.train import train_step

ROOT = Path(__file__).resolve().parent.parent
AVERAGES = {  # plan and command-line key: (test of its value, what is expected)
    'ema': (lambda v: is_number(v) and 0 < v < 1, 'a decay per step in (0, 1), e.g. 0.998'),
    'swa_epochs': (lambda v: is_int(v, 1), 'a positive integer: the last epochs averaged'),
    'lookahead': (lambda v: is_number(v) and 0 < v < 1, "the slow weights' last decay in (0, 1), e.g. 0.774"),
}
LOOKAHEAD_K = 5  # training steps between two syncs (the paper's and airbench's k)
BN_BATCHES = 50  # training batches an average's BatchNorm statistics are measured on (6,400 images)


def split_average(overrides: dict, epochs: int) -> tuple[str, float, dict]:
    "The one averaging key of `overrides`, its value, and the recipe overrides left; ValueError if not one."
    given = [k for k in AVERAGES if k in overrides]
    if len(given) != 1: raise ValueError(f"Give exactly one of {list(AVERAGES)}, got {given or 'none'}.")
    kind, value = given[0], overrides[given[0]]
    ok, expected = AVERAGES[kind]
    if not ok(value): raise ValueError(f"{kind}={value!r}: expected {expected}.")
    if kind == 'swa_epochs' and value > epochs:
        raise ValueError(f"swa_epochs={value}: expected at most epochs={epochs}.")
    return kind, value, {k: v for k, v in overrides.items() if k != kind}


# The averages: PyTorch's AveragedModel with its all-at-once update (`get_*_multi_avg_fn`: 3.1x faster on a
# CPU than AveragedModel's default path, the same weights to 1.2e-7, average-cost-cpu.json).
# `use_buffers=False`: the average's BatchNorm statistics are measured again (`recompute_bn`), never averaged.
def ema_model(model: nn.Module, decay: float = 0.999) -> AveragedModel:
    "An exponential moving average of `model`'s weights: each update moves it `1 - decay` of the way."
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)

def swa_model(model: nn.Module) -> AveragedModel:
    "An equal-weight average of `model`'s weights over its updates (SWA, Izmailov et al., arXiv:1803.05407)."
    return AveragedModel(model, multi_avg_fn=get_swa_multi_avg_fn(), use_buffers=False)

def recompute_bn(model: nn.Module, dl, device: torch.device, precision: str, batches: int = BN_BATCHES):
    "Replace `model`'s BatchNorm statistics by those of its own activations on the first `batches` of `dl`."
    cl = torch.channels_last if device.type in ('cuda', 'cpu') else torch.preserve_format
    inputs = (xb.to(device, non_blocking=True).contiguous(memory_format=cl) for xb, _ in islice(dl, batches))
    with autocast(device, precision): update_bn(inputs, model.to(device, memory_format=cl))


# Lookahead (Zhang et al., 2019, arXiv:1907.08610) as airbench uses it: every k steps the slow weights move
# towards the model's and the model takes them; their decay rises as (t/T)^3 to `decay`, so early syncs barely
# hold the model back and late ones average; at the last step the model ends on the slow weights.
def _float_state(model: nn.Module) -> list:
    "The floating-point tensors of `model`'s state: its weights and BatchNorm statistics."
    return [t for t in model.state_dict().values() if t.is_floating_point()]

def lookahead_state(model: nn.Module, total_steps: int, decay: float = 0.95**5, k: int = LOOKAHEAD_K) -> dict:
    "Lookahead's slow weights (a copy of `model`'s float state, on its device) and its schedule."
    slow = [t.detach().clone() for t in _float_state(model)]
    return {'slow': slow, 'step': 0, 'total': int(total_steps), 'decay': float(decay), 'k': int(k)}

def lookahead_step(model: nn.Module, state: dict):
    "Count one training step; every k-th, sync the slow weights with decay `decay * (step / total)**3`."
    state['step'] += 1
    step, total = state['step'], state['total']
    syncs = [state['decay'] * (step / total) ** 3] if step % state['k'] == 0 else []
    if step == total: syncs.append(1.0)  # the run ends on the slow weights
    weights = _float_state(model) if syncs else []
    with torch.no_grad():
        for d in syncs:
            torch._foreach_lerp_(state['slow'], weights, 1 - d); torch._foreach_copy_(weights, state['slow'])


def _machine(device: torch.device, precision: str) -> dict:
    "Where the run trained, as `fit` records it in History.machines."
    return {'from_epoch': 1, 'device': str(device), 'device_name': device_name(device),
            'precision': precision, 'cpu_has_bf16': cpu_has_bf16(),
            'cpu_capability': torch.backends.cpu.get_cpu_capability(),
            'torch_version': str(torch.__version__),
            'started': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}

def _git_commit() -> str|None:
    "The commit of this checkout, with '+changes' when tracked files differ; None outside git."
    git = lambda *a: subprocess.run(['git', *a], cwd=ROOT, capture_output=True, text=True)
    head = git('rev-parse', 'HEAD').stdout.strip()
    return head + ('+changes' if git('diff', '--quiet', 'HEAD', '--').returncode else '') if head else None


def fit_averaged(cfg: dict, kind: str, value, data: Cifar10, out: Path,
                 device: torch.device) -> tuple[History, list, float]:
    "Train the recipe `cfg` with one average; returns its History, the trained weights' accuracies, flip TTA."
    set_seed(cfg['seed'])  # the first weights and batches of train_run: an average never changes the training
    cl = torch.channels_last if device.type in ('cuda', 'cpu') else torch.preserve_format  # as in fit
    model = make_model(cfg['model'], len(data.classes), cfg['zero_init_residual'])
    model = model.to(device, memory_format=cl)
    train_dl, test_dl = recipe_dataloaders(cfg, data, device, cfg['limit'])
    if cfg['resize_epochs']:
        train_dl = ProgressiveResize(train_dl, cfg['resize_side'], cfg['resize_epochs'], device)
    opt = make_optimizer(model, cfg['optimizer'], cfg['lr'], cfg['momentum'], cfg['nesterov'],
                         cfg['weight_decay'], cfg['wd_on_bn_bias'])
    epochs, steps = cfg['epochs'], len(train_dl)
    sched = make_scheduler(opt, cfg['scheduler'], epochs, steps, **cfg['scheduler_kw'])
    crit = nn.CrossEntropyLoss(label_smoothing=cfg['label_smoothing'])
    prec = resolve_precision(cfg['precision'], device); scaler = grad_scaler(device, prec)
    avg = ema_model(model, value) if kind == 'ema' else swa_model(model) if kind == 'swa_epochs' else None
    avg_from = epochs - value if kind == 'swa_epochs' else 0  # the first epoch whose steps update the average
    la = lookahead_state(model, epochs * steps, value) if kind == 'lookahead' else None
    h, raw, tested = History(machines=[_machine(device, prec)]), [], model
    for epoch in range(epochs):
        reseed(train_dl, cfg['seed'], epoch)
        t0, lr, loss_sum, right, n = time.perf_counter(), opt.param_groups[0]['lr'], 0., 0, 0
        model.train()
        # through tqdm.auto as train_epoch does: making the bar opens one iterator of the loader (a draw from
        # its generator), so these are the batches of train_run's epoch
        for xb, yb in tqdm(train_dl, desc=f'epoch {epoch + 1}/{epochs}', leave=False):
            loss, (logits,) = train_step(model, [(xb, yb)], opt, crit, scaler, device, prec)
            if isinstance(sched, OneCycleLR): sched.step()
            if la is not None: lookahead_step(model, la)
            if avg is not None and epoch >= avg_from: avg.update_parameters(model)
            yb = yb.to(device, non_blocking=True)
            loss_sum += loss * len(yb); right += (logits.argmax(1) == yb).sum(); n += len(yb)
        raw_loss, raw_acc = evaluate(model, test_dl, None, device, prec)
        test_loss, test_acc = raw_loss, raw_acc
        if avg is not None and epoch >= avg_from:  # the average is the run's model from here on
            recompute_bn(avg.module, train_dl, device, prec); tested = avg.module
            test_loss, test_acc = evaluate(tested, test_dl, None, device, prec)
        train_loss = float(loss_sum) / n
        if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
            raise FloatingPointError(f"The loss became {train_loss:.4g} (train), {test_loss:.4g} (test) in "
                                     f"epoch {epoch + 1} at learning rate {lr:.3g}: training diverged.")
        if isinstance(sched, ReduceLROnPlateau): sched.step(test_loss)
        elif sched is not None and not isinstance(sched, OneCycleLR): sched.step()
        h.append(train_loss=train_loss, train_acc=float(right) / n, test_loss=test_loss, test_acc=test_acc,
                 lr=lr, seconds=time.perf_counter() - t0)
        raw.append(raw_acc)
        print(f"epoch {epoch + 1:3d}/{epochs}  train loss {train_loss:.4f} acc {h.train_acc[-1]:6.2%}  "
              f"test loss {test_loss:.4f} acc {test_acc:6.2%} (trained weights {raw_acc:6.2%})  lr {lr:.2e}  "
              f"{h.seconds[-1]:.1f} s", flush=True)
        save_checkpoint(out/'checkpoint.pt', tested, epoch=epoch + 1, history=h)
        h.save(out/'history.json')
    return h, raw, evaluate(tested, test_dl, None, device, prec, tta=True)[1]


def _write_results(out: Path, h: History, raw: list, tta_acc: float, cfg: dict, data: Cifar10,
                   device: torch.device, augmentation: str):
    "metrics.json with train_run's fields and the trained weights' own accuracy, and curves.png."
    best = max(range(len(h)), key=lambda i: h.test_acc[i])
    m = {'final_test_acc': h.test_acc[-1], 'final_raw_test_acc': raw[-1], 'raw_test_acc': raw,
         'best_test_acc': h.test_acc[best], 'best_epoch': best + 1, 'final_tta_acc': tta_acc,
         'final_train_acc': h.train_acc[-1], 'epochs': len(h), 'total_seconds': sum(h.seconds),
         'epoch_seconds': h.seconds, 'device': str(device), 'device_name': device_name(device),
         'precision': h.machines[0]['precision'], 'cpu_capability': torch.backends.cpu.get_cpu_capability(),
         'cpu_has_bf16': cpu_has_bf16(), 'torch_version': torch.__version__,
         'python_version': platform.python_version(), 'machines': h.machines, 'recipe': cfg['recipe'],
         'config': cfg, 'data_source': data.source, 'reported_acc': REPORTED_ACCURACY.get(cfg['recipe']),
         'train_images': len(data.x_train[:cfg['limit']]),
         'test_images': len(data.x_test[:cfg['limit']]),
         'augmentation': augmentation, 'git_commit': _git_commit(),
         'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}
    atomic_write(out/'metrics.json', lambda tmp: Path(tmp).write_text(json.dumps(m, indent=1)))
    fig = plot_history(h, title=f"{cfg['recipe']} with {cfg['average']} on {cfg['data']}")
    atomic_write(out/'curves.png', lambda tmp: fig.savefig(tmp, dpi=100, format='png', bbox_inches='tight'))


def train_averaged(recipe: str = 'fast', data: str|Path|Cifar10 = 'auto', out: str|Path|None = None,
                   device: str|torch.device|None = None, limit: int|None = None,
                   force: bool = False, **overrides) -> History:
    "Train `recipe` with the one average in `overrides` (ema, swa_epochs or lookahead) into the folder `out`."
    overrides = {k: v for k, v in overrides.items() if v is not None}  # as train_run: None keeps the recipe's
    kind, value, rest = split_average(overrides, overrides.get('epochs', get_recipe(recipe)['epochs']))
    cfg = get_recipe(recipe, **rest)
    if cfg['lr'] == 'find': raise ValueError("lr='find' is not run here: give the recipe a number for lr.")
    out, dev, limit = Path(out or ROOT/'runs'/f"{recipe}-{kind}"), get_device(device), check_limit(limit)
    if not force and any((out/f).exists() for f in ('checkpoint.pt', 'history.json')):
        raise FileExistsError(f"{out} already holds a run: pass force=True (--force) to replace it.")
    with lock_run_folder(out):
        for f in RUN_FILES: (out/f).unlink(missing_ok=True)
        data = data if isinstance(data, Cifar10) else load_cifar10(data)
        cfg = {'recipe': recipe, **cfg, kind: value, 'average': f"{kind}={value}", 'data': data.source,
               'limit': limit}
        atomic_write(out/'config.json', lambda tmp: Path(tmp).write_text(json.dumps(cfg, indent=1)))
        print(f"{recipe} with {kind}={value}: {cfg['epochs']} epochs on {dev} ({device_name(dev)}), {out}")
        h, raw, tta_acc = fit_averaged(cfg, kind, value, data, out, dev)
        how = 'on the device (augment_batch)'
        if cfg['resize_epochs']:
            how += f"; epochs 1-{cfg['resize_epochs']} resized to {cfg['resize_side']} px"
        _write_results(out, h, raw, tta_acc, cfg, data, dev, how)
    return h


def _value(text: str):
    "A --set value: JSON (numbers, true, dicts), else the text itself (a name such as s9)."
    try: return json.loads(text)
    except ValueError: return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--recipe', default='fast', help='a recipe of eva_cam.run.RECIPES (default: %(default)s)')
    avg = p.add_mutually_exclusive_group(required=True)
    avg.add_argument('--ema', type=float, help='decay per step of an exponential average, e.g. 0.998')
    avg.add_argument('--swa-epochs', type=int, help='average the weights over the last N epochs (SWA)')
    avg.add_argument('--lookahead', type=float, help="Lookahead: the slow weights' largest decay, e.g. 0.774")
    p.add_argument('--epochs', type=int, help="the recipe's epochs (default: the recipe's)")
    p.add_argument('--seed', type=int, help="the recipe's seed (default: the recipe's)")
    p.add_argument('--set', nargs='+', default=[], metavar='KEY=JSON',
                   help='other recipe keys, e.g. label_smoothing=0.0 \'scheduler_kw={"pct_start":0.3}\'')
    p.add_argument('--data', default='auto', help="CIFAR-10: a path, 'auto', 'download' or 'sample'")
    p.add_argument('--out', type=Path, help='the run folder (default: runs/RECIPE-KIND)')
    p.add_argument('--device', help='cuda, mps or cpu (default: the best available)')
    p.add_argument('--limit', type=int, help='only the first N images of each split')
    p.add_argument('--force', action='store_true', help='replace the run already in --out')
    a = p.parse_args(argv)
    if any('=' not in s for s in a.set): p.error(f"--set takes KEY=VALUE pairs, got {a.set}")
    extra = {k: _value(v) for k, v in (s.split('=', 1) for s in a.set)}
    train_averaged(a.recipe, a.data, a.out, a.device, a.limit, a.force, epochs=a.epochs,
                   seed=a.seed, ema=a.ema, swa_epochs=a.swa_epochs, lookahead=a.lookahead, **extra)


if __name__ == '__main__':
    main()
