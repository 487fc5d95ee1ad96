"""Weight averaging in a short run: what the averaged BatchNorm statistics cost, checkpoint by checkpoint.

A run with the recipe key `ema` keeps a moving average of its weights (`ema_model`). The first version of it
(commit bede6cc) averaged the BatchNorm running statistics too (`use_buffers=True`). While the weights still change
fast, such averaged statistics need not match what the averaged weights compute. This script tests, for each
checkpoint given, the averaged weights after
`eva_cam.train.recompute_bn` (PyTorch's `update_bn`) has measured their statistics again on `--bn-batches`
augmented training batches of the run's own size, as `fit` now does after every epoch. The trained weights'
own accuracy, and the average's as the run tested it, are read from the checkpoint's history.

The first run with `ema` (8 epochs, decay 0.998) was made by the code of bede6cc, which averaged the statistics
(`use_buffers=True`) and tested the average with them; its checkpoints, one copied after each epoch, are what this
script was written for. For a run of the current code, "as the run tested it" is already with recomputed statistics.

    # checkpoint.pt of `python bench/fast_cpu.py ... --epochs 8 --set ema=0.998` (now bench/run_plan.py), copied after each epoch
    python bench/ema_bn.py snaps/epoch*.pt --data ../shared/data/cifar10-jpeg.tar.gz \\
        --json bench/results/fast8-ema998-bn-cpu.json
"""
from __future__ import annotations
import argparse, datetime, json, time
from pathlib import Path

import torch

from eva_cam.data import load_cifar10, reseed
from eva_cam.run import recipe_dataloaders
from eva_cam.resnet import make_model
from eva_cam.train import ema_model, evaluate, load_checkpoint, recompute_bn, swa_model


def check(path: Path, data, bn_batches: int) -> dict:
    "Test accuracy of one checkpoint's averaged model, before and after recomputing its BatchNorm statistics."
    ck = load_checkpoint(path)
    cfg, h, epoch = ck['config'], ck['history'], ck['epoch']
    if not (cfg.get('ema') or cfg.get('swa_epochs')):
        raise ValueError(f"{path} comes from a run without a weight average (ema={cfg.get('ema')!r}, swa_epochs={cfg.get('swa_epochs')!r}): expected ema > 0 or swa_epochs > 0.")
    if not int(ck['ema']['n_averaged']):  # a run whose average starts late (swa_epochs), saved before it started
        raise ValueError(f"{path} was saved before its run's weight average started (swa_epochs={cfg.get('swa_epochs')}): nothing averaged yet.")
    avg = ema_model(make_model(cfg['model']), cfg['ema']) if cfg.get('ema') else swa_model(make_model(cfg['model']))
    load_checkpoint(path, ema=avg)
    train_dl, test_dl = recipe_dataloaders(cfg, data, num_workers=1)
    reseed(train_dl, cfg['seed'], epoch)
    t0 = time.perf_counter()
    recompute_bn(avg.module, train_dl, bn_batches, device='cpu', precision=cfg['precision'])
    bn_seconds = time.perf_counter() - t0
    recomputed = evaluate(avg.module, test_dl, device='cpu', precision=cfg['precision'])[1]
    r = {'checkpoint': str(path), 'epoch': epoch, 'trained_weights': h['raw_test_acc'][epoch - 1],
         'average_as_run': h['test_acc'][epoch - 1],
         'average_bn_recomputed': recomputed, 'recompute_bn_seconds': bn_seconds}
    print(f"epoch {epoch}: trained weights {r['trained_weights']:.2%}, average as the run tested it {r['average_as_run']:.2%}, "
          f"average with recomputed BatchNorm statistics {recomputed:.2%} (recompute_bn {bn_seconds:.0f} s)", flush=True)
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('checkpoints', nargs='+', help="checkpoint.pt files of a run made with ema > 0, e.g. one per epoch")
    p.add_argument('--data', default='auto', help="the CIFAR-10 the run trained on (a path, 'auto' or 'sample')")
    p.add_argument('--bn-batches', type=int, default=50, help="training batches for the recomputed statistics (fit's default)")
    p.add_argument('--json', help='where to write the record')
    a = p.parse_args()
    data = load_cifar10(a.data)
    rows = []
    for c in a.checkpoints:  # the record is rewritten after each checkpoint, so a stopped run keeps what it measured
        rows.append(check(Path(c), data, a.bn_batches))
        rec = {'what': "weight average (EMA) of a run: test accuracy with the averaged BatchNorm statistics the run used, "
                       "and with statistics recomputed by eva_cam.train.recompute_bn",
               'bn_batches': a.bn_batches, 'data_source': data.source, 'rows': rows,
               'torch_version': torch.__version__, 'threads': torch.get_num_threads(),
               'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}
        if a.json: Path(a.json).write_text(json.dumps(rec, indent=1) + '\n')
    if a.json: print(f"written to {a.json}")


if __name__ == '__main__':
    main()
