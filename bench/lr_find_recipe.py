"""A recipe's LR range test on the full data, exactly as `lr='find'` runs it before epoch 1, with every rule's suggestion.

The recipe's own model, first weights (its seed), training batches, optimizer (weight decay included) and loss;
`lr_find_iter` steps from 1e-7 to 10. Writes bench/results/lr-find-RECIPE-cpu.json (or --json) with the curve,
every suggestion, the seconds it took, the device, torch version, commit and date, and the plot beside it.

    python bench/lr_find_recipe.py --recipe s10 --data ../shared/data/cifar10-jpeg.tar.gz    # ~3 min on 2 free cores
"""
from __future__ import annotations
import argparse, datetime, json, subprocess, time
from pathlib import Path

import torch, torch.nn as nn

from eva_cam.data import load_cifar10
from eva_cam.core import get_device, set_seed
from eva_cam.run import get_recipe, recipe_dataloaders
from eva_cam.resnet import make_model
from eva_cam.train import make_optimizer
from eva_cam.lrfinder import lr_find, plot_lr_find


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--recipe', default='s10', help='a recipe (default: %(default)s)')
    p.add_argument('--data', default='auto', help="the full CIFAR-10 (default: %(default)s)")
    p.add_argument('--json', type=Path, default=None, help='the record (default: bench/results/lr-find-RECIPE-cpu.json)')
    a = p.parse_args()
    cfg = get_recipe(a.recipe); set_seed(cfg['seed']); dev = get_device()
    data = load_cifar10(a.data)
    dl, _ = recipe_dataloaders(cfg, data, dev)
    model = make_model(cfg['model'], zero_init_residual=cfg['zero_init_residual']).to(dev)
    opt = make_optimizer(model, cfg['optimizer'], 1.0, cfg['momentum'], cfg['nesterov'], cfg['weight_decay'], cfg['wd_on_bn_bias'])
    t0 = time.perf_counter()
    res = lr_find(model, dl, opt, nn.CrossEntropyLoss(label_smoothing=cfg['label_smoothing']), num_iter=cfg['lr_find_iter'],
                  precision=cfg['precision'])
    secs = time.perf_counter() - t0
    out = a.json or Path(__file__).parent/'results'/f"lr-find-{a.recipe}-{dev.type}.json"
    fig = plot_lr_find(res); fig.savefig(out.with_suffix('.png'), dpi=90, bbox_inches='tight')
    low = int(res.losses.argmin())
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip() or None
    rec = {'what': f"LR range test of the {a.recipe!r} recipe on {data.source}, as lr='find' runs it",
           'recipe_as_run': cfg, 'settings': res.settings, 'suggestions': res.suggestions,
           'lowest_smoothed_loss': float(res.losses[low]), 'at_lr': float(res.lrs[low]), 'diverged': res.diverged,
           'lrs': res.lrs.tolist(), 'smoothed_losses': [float(x) for x in res.losses], 'raw_losses': [float(x) for x in res.raw_losses],
           'seconds': secs, 'device': str(dev), 'torch_version': torch.__version__, 'git_commit': commit,
           'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}
    out.write_text(json.dumps(rec, indent=1) + '\n')
    print(f"{res}\nlowest smoothed loss {rec['lowest_smoothed_loss']:.3f} at lr {rec['at_lr']:.3g}; {secs:.0f} s; written to {out}")


if __name__ == '__main__':
    main()
