"""The `fast` recipe on the full CIFAR-10, on this machine: how accurate after how many epochs, and how long each took.

Trains (or resumes, or only reads) a run folder and writes bench/results/fast-cpu.json from the run's own files
(history.json and metrics.json, written by eva_cam.train.train_run as it trains): per-epoch test accuracy and
seconds, final accuracy with and without flip test-time augmentation, the recipe as run, the device, the CPU, the
torch version, the git commit and the date, and whether the issue's targets (>= 93% within 15 epochs, >= 90%
within 8) are met by this run.

    python bench/fast_cpu.py --data ../shared/data/cifar10-jpeg.tar.gz --out runs/fast15             # ~2.7 h here
    python bench/fast_cpu.py --data ../shared/data/cifar10-jpeg.tar.gz --out runs/fast15 --resume    # after a stop
    python bench/fast_cpu.py --out runs/fast15 --read-only     # only write the JSON from the run folder (finished or not)
    python bench/fast_cpu.py --data ... --out runs/fast8 --epochs 8 --json bench/results/fast8-cpu.json
    python bench/fast_cpu.py --data ... --out runs/fast15-cz --set cutout=16 --set zero_init_residual=True \
        --json bench/results/fast15-cutout16-zeroinit-cpu.json    # any recipe key can be changed for a comparison
"""
from __future__ import annotations
import argparse, datetime, json, os, platform
from pathlib import Path

from eva_cam.cli import parse_setting  # `eva_cam train --set` reads its values the same way

TARGETS = {15: 0.93, 8: 0.90}  # epochs -> test accuracy the issue asks for within that many epochs


def progress(run: Path) -> dict:
    "The record of a run that has not finished yet: the epochs done so far, from history.json and checkpoint.pt."
    import torch
    h = json.loads((run/'history.json').read_text())
    ckpt = torch.load(run/'checkpoint.pt', map_location='cpu', weights_only=True)
    cfg = ckpt['config']
    return {'what': f"UNFINISHED: eva_cam `{cfg['recipe']}` recipe, {ckpt['epoch']} of {cfg['epochs']} epochs done",
            'finished': False, 'epochs_done': ckpt['epoch'], 'test_acc_per_epoch': h['test_acc'],
            'raw_test_acc_per_epoch': h.get('raw_test_acc', h['test_acc']),
            'seconds_per_epoch': h['seconds'], 'train_acc_per_epoch': h['train_acc'], 'lr_per_epoch': h['lr'],
            'recipe_as_run': cfg, 'cpu_count': os.cpu_count(), 'device_name': _cpu_name(),
            'json_written': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            'resume_with': f"python bench/fast_cpu.py --data {cfg['data']} --out {run} --resume{_changes(cfg)}"}


def _changes(cfg: dict) -> str:
    "The command-line options that give a run the settings of `cfg` where they differ from its recipe."
    from eva_cam.train import get_recipe
    base = get_recipe(cfg['recipe'])
    opts = [f" --epochs {cfg['epochs']}"] if cfg['epochs'] != base['epochs'] else []
    return ''.join(opts + [f" --set {k}={cfg[k]!r}" for k in base if k != 'epochs' and cfg.get(k) != base[k]])


def _cpu_name() -> str:
    for line in Path('/proc/cpuinfo').read_text().splitlines():
        if line.startswith('model name'): return line.split(':', 1)[1].strip()
    return platform.processor()


def evidence(run: Path) -> dict:
    "The benchmark record of a finished run folder, read from its history.json and metrics.json."
    if not (run/'metrics.json').exists(): return progress(run)
    h, m = (json.loads((run/f).read_text()) for f in ('history.json', 'metrics.json'))
    epochs = m['config']['epochs']
    met = {f'>= {acc:.0%} within {n} epochs': (h['test_acc'][-1] >= acc if epochs <= n else None)
           for n, acc in TARGETS.items()}
    return {
        'finished': True,
        'what': f"eva_cam `{m['recipe']}` recipe, ResNet18, {epochs} epochs on {m['train_images']} training images, "
                f"tested on {m['test_images']}",
        'test_acc_per_epoch': h['test_acc'], 'seconds_per_epoch': h['seconds'], 'train_acc_per_epoch': h['train_acc'],
        # with --set ema=DECAY the accuracies above are the weight average's; these are the trained weights' own
        'raw_test_acc_per_epoch': h.get('raw_test_acc', h['test_acc']),
        'final_raw_test_acc': m.get('final_raw_test_acc', m['final_test_acc']),
        'lr_per_epoch': h['lr'], 'final_test_acc': m['final_test_acc'], 'final_test_acc_flip_tta': m['final_tta_acc'],
        'best_test_acc': m['best_test_acc'], 'best_epoch': m['best_epoch'],
        'targets_met_by_final_accuracy': met,
        'total_hours': sum(h['seconds']) / 3600, 'recipe_as_run': m['config'],
        'device': m['device'], 'device_name': m['device_name'], 'precision': m['precision'],
        'cpu_count': os.cpu_count() if m['device'] == 'cpu' else None,  # this machine's: only a CPU run's speed depends on it
        'torch_version': m['torch_version'], 'python_version': m['python_version'],
        'processes': m.get('processes', 1), 'data_source': m['data_source'],
        'git_commit_at_end_of_run': m['git_commit'], 'run_finished': m['date'],
        'json_written': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'run_folder': str(run),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', default='auto', help="the full CIFAR-10 (a path, 'auto' or 'download')")
    p.add_argument('--out', required=True, help='run folder')
    p.add_argument('--epochs', type=int, default=None, help="override the recipe's 15 epochs")
    p.add_argument('--resume', action='store_true', help='continue the run in --out')
    p.add_argument('--read-only', action='store_true', help='do not train: only write the JSON from --out')
    p.add_argument('--json', default='bench/results/fast-cpu.json', help='where to write the record')
    p.add_argument('--set', type=parse_setting, action='append', default=[], metavar='KEY=VALUE',
                   help="change one recipe key for this run, e.g. --set cutout=0 (as for `eva_cam train`; repeatable)")
    a = p.parse_args()
    overrides = dict(a.set)
    if 'epochs' in overrides: p.error("give the number of epochs with --epochs, not --set epochs=...")
    run = Path(a.out)
    if not a.read_only:
        from eva_cam.train import train_run
        train_run('fast', data=a.data, out=run, epochs=a.epochs, resume=a.resume, **overrides)
        if os.environ.get('RANK', '0') != '0': return  # under torchrun, process 0 writes the record
    rec = evidence(run)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(rec, indent=1) + '\n')
    acc = ', '.join(f'{x:.1%}' for x in rec['test_acc_per_epoch'])
    if not rec['finished']: return print(f"{rec['what']}\nper epoch so far: {acc}\nwritten to {a.json}; {rec['resume_with']}")
    print(f"{rec['what']}\nper epoch: {acc}\nfinal {rec['final_test_acc']:.2%} (flip TTA {rec['final_test_acc_flip_tta']:.2%}) "
          f"in {rec['total_hours']:.2f} h on {rec['device_name']}; written to {a.json}")


if __name__ == '__main__':
    main()
