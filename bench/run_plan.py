"""Run the evidence plan (bench/plan.json): train each run, skip the finished, resume the stopped, record each.

Every entry of the plan is a setting (a recipe, its epochs, optional recipe overrides) and the seeds to run it
with; each seed is one run, named SETTING-seedN, trained by eva_cam.run.train_run into RUNS/NAME. When a run
finishes, its record is written to RESULTS/NAME.json from the run's own files (history.json, metrics.json):
per-epoch test accuracy and seconds, final accuracy with and without flip TTA, the recipe as run (its seed
included), device, torch version, commit, date, images per second, and `finished`. A run stopped part-way
gets a record marked unfinished with its epochs so far, and is resumed from its checkpoint by the next call
(checkpoints resume exactly). bench/results/summary.md gives, per setting, the mean, min and max over seeds.
Records and the summary are written by this script only, never by hand.

    python bench/run_plan.py --data ../shared/data/cifar10-jpeg.tar.gz                 # the whole plan, in order
    nohup nice python bench/run_plan.py --data ../shared/data/cifar10-jpeg.tar.gz --runs /root/eva_runs > plan.log 2>&1 &
    python bench/run_plan.py --data ... --only s10 fast8-seed1                        # some runs (settings or names)
    python bench/run_plan.py --data ... --device cuda --jobs 4                        # a GPU: four runs at once
    python bench/run_plan.py --summary-only                                           # only rewrite summary.md
"""
from __future__ import annotations
import argparse, datetime, json, os, signal, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def expand(plan: dict) -> list[dict]:
    "One spec per run: the plan's settings times their seeds, in the plan's order."
    specs = []
    for s in plan['runs']:
        for seed in s.get('seeds', [0]):
            specs.append({'name': f"{s['setting']}-seed{seed}", 'setting': s['setting'], 'recipe': s['recipe'],
                          'epochs': s['epochs'], 'seed': seed, 'set': s.get('set', {}),
                          'limit': s.get('limit'), 'batch_size': s.get('batch_size')})
    names = [s['name'] for s in specs]
    if len(set(names)) != len(names): raise ValueError(f"The plan names a run twice: {sorted(n for n in names if names.count(n) > 1)}")
    return specs


def machines(run: Path) -> list[dict]:
    "Where the run in folder `run` trained (chapter 02's `fit`: one row per start or resume): metrics.json's list, else its checkpoint's; [] before the list existed."
    try:
        if (run/'metrics.json').is_file(): return json.loads((run/'metrics.json').read_text()).get('machines', [])
        if not (run/'checkpoint.pt').is_file(): return []
        import torch
        return torch.load(run/'checkpoint.pt', map_location='cpu', weights_only=True).get('machines', [])
    except Exception: return []  # written while a run stops: an unreadable file must not hide why it stopped


def _label(m: dict) -> str:
    "A machine as the summary names it: the device's name, the precision, and the processes if more than one."
    return f"{m['device_name']}, {m['precision']}" + (f", {m['processes']} processes" if m.get('processes', 1) > 1 else '')


def where(rec: dict) -> str:
    "Where a finished record's run trained (device and precision); for a run resumed on another machine or in another precision, which epochs ran where."
    rows = rec.get('machines') or []
    if not rows: return _label(rec)  # records from before the list: what metrics.json said of the last machine
    rows = [m for i, m in enumerate(rows) if i == 0 or _label(m) != _label(rows[i - 1])]  # resumed on the same machine: one stretch
    labels = [_label(m) for m in rows]
    if rows[0]['from_epoch'] > 1: rows, labels = [{'from_epoch': 1}] + rows, ['not recorded'] + labels  # begun before the list existed
    if len(rows) == 1: return labels[0]
    ends = [m['from_epoch'] - 1 for m in rows[1:]] + [rec['epochs_done']]
    return '; '.join(f"epochs {m['from_epoch']}-{end}: {label}" for m, end, label in zip(rows, ends, labels))


def record(run: Path, spec: dict) -> dict:
    "The record of the run folder `run`: finished (metrics.json is there) or its epochs so far."
    h = json.loads((run/'history.json').read_text()) if (run/'history.json').is_file() else None
    rec = {'name': spec['name'], 'setting': spec['setting'], 'seed': spec['seed'], 'finished': False,
           'epochs_planned': spec['epochs'], 'epochs_done': len(h['test_acc']) if h else 0,
           'test_acc_per_epoch': h['test_acc'] if h else [], 'seconds_per_epoch': h['seconds'] if h else [],
           'machines': machines(run),  # which epochs trained where: runs on a CPU are resumed across sessions
           'record_written': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
           'run_folder': str(run)}
    if not (run/'metrics.json').is_file(): return rec
    m = json.loads((run/'metrics.json').read_text())
    images = m['train_images'] * m['epochs']
    rec.update(finished=True, final_test_acc=m['final_test_acc'], final_test_acc_flip_tta=m['final_tta_acc'],
               final_raw_test_acc=m.get('final_raw_test_acc', m['final_test_acc']), best_test_acc=m['best_test_acc'],
               best_epoch=m['best_epoch'], train_acc_per_epoch=h['train_acc'], lr_per_epoch=h['lr'],
               reported_acc=m.get('reported_acc'), recipe_as_run=m['config'], device=m['device'],
               device_name=m['device_name'], precision=m['precision'], processes=m.get('processes', 1),
               cpu_capability=m.get('cpu_capability'), cpu_has_bf16=m.get('cpu_has_bf16'),  # None in records from before they were kept
               augmentation=m.get('augmentation', 'Albumentations'),
               torch_version=m['torch_version'], python_version=m['python_version'], data_source=m['data_source'],
               train_images=m['train_images'], test_images=m['test_images'], total_minutes=m['total_seconds'] / 60,
               train_images_per_second=images / m['total_seconds'],  # testing included: what a whole epoch achieves
               git_commit=m['git_commit'], run_finished=m['date'])
    return rec


def write_json(path: Path, obj: dict):
    "Write `obj` to `path` through a temporary file, so a record is never half-written."
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    tmp.write_text(json.dumps(obj, indent=1) + '\n'); os.replace(tmp, path)


def run_one(spec: dict, data, runs: Path, results: Path, device=None, num_workers=None) -> str:
    "Train (or resume, or skip) one run and write its record; returns what was done."
    rec_path, run = results/f"{spec['name']}.json", runs/spec['name']
    if rec_path.is_file() and json.loads(rec_path.read_text()).get('finished'): return 'skipped (finished)'
    from eva_cam.run import train_run
    resume = (run/'checkpoint.pt').is_file()
    try:
        train_run(spec['recipe'], data=data, out=run, epochs=spec['epochs'], batch_size=spec['batch_size'], device=device,
                  resume=resume, limit=spec['limit'], num_workers=num_workers, seed=spec['seed'], **spec['set'])
    finally:  # finished or not, the record says where the run got to
        if os.environ.get('RANK', '0') == '0' and (run/'history.json').is_file(): write_json(rec_path, record(run, spec))
    return 'resumed' if resume else 'trained'


def minutes_to(rec: dict, target: float) -> float|None:
    "Minutes of a record's epochs (training and testing; not loading) until its test accuracy first reaches `target` (a fraction), or None."
    for epoch, acc in enumerate(rec['test_acc_per_epoch']):
        if acc >= target: return sum(rec['seconds_per_epoch'][:epoch + 1]) / 60
    return None


def summary(specs: list[dict], results: Path) -> str:
    "Markdown: per setting, the finished seeds' mean, min and max test accuracy (and flip TTA), from the records."
    from eva_cam.run import REPORTED_ACCURACY
    goal = REPORTED_ACCURACY['s10']  # issue 20's CPU time target: how soon a run first reaches it
    lines = ['# Evidence runs: summary', '',
             'Written by `bench/run_plan.py` from the records in `bench/results/plan/` (one per run). Test accuracy after '
             'the last epoch, in %; mean, min and max over the finished seeds, one row per device and precision (a run resumed on '
             'another machine or in another precision: a row of its own, saying which epochs ran where). Minutes to '
             f'{100 * goal:.2f}% (the S10 write-up): the epochs until a run first reaches it, mean over the seeds that did.', '',
             f'| setting | recipe | epochs | seeds finished | mean | min | max | flip TTA mean | write-up | minutes per run | minutes to {100 * goal:.2f}% | device, precision |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for setting in dict.fromkeys(s['setting'] for s in specs):
        mine = [s for s in specs if s['setting'] == setting]
        recs = [json.loads((results/f"{s['name']}.json").read_text()) for s in mine if (results/f"{s['name']}.json").is_file()]
        by_device = {}  # one row per device and precision: seeds are compared on one (the same seed differed by 0.54 points between two devices)
        for r in recs:
            if r.get('finished'): by_device.setdefault(where(r), []).append(r)
        partial = [f"{r['name']}: {r['epochs_done']}/{r['epochs_planned']} epochs" for r in recs if not r.get('finished')]
        written = REPORTED_ACCURACY.get(mine[0]['recipe']) if not mine[0]['set'] else None  # the write-up's own figure
        f = lambda xs: f"{statistics.mean(xs):.2f}" if xs else '–'
        for i, (device, done) in enumerate(by_device.items() if by_device else [('–', [])]):
            accs = [100 * r['final_test_acc'] for r in done]
            soon = [m for m in (minutes_to(r, goal) for r in done) if m is not None]
            soon = f(soon) + (f' ({len(soon)} of {len(done)} seeds)' if 0 < len(soon) < len(done) else '')
            lines.append(f"| {setting} | {mine[0]['recipe']} | {mine[0]['epochs']} | {len(done)} of {len(mine)}"
                         f"{' (' + '; '.join(partial) + ')' if partial and i == 0 else ''} | {f(accs)} | "
                         f"{f'{min(accs):.2f}' if accs else '–'} | {f'{max(accs):.2f}' if accs else '–'} | "
                         f"{f([100 * r['final_test_acc_flip_tta'] for r in done])} | {f'{100 * written:.2f}' if written else '–'} | "
                         f"{f([r['total_minutes'] for r in done])} | {soon} | {device} |")
    return '\n'.join(lines) + '\n'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--plan', type=Path, default=ROOT/'bench'/'plan.json', help='the plan (default: %(default)s)')
    p.add_argument('--data', default='auto', help="the full CIFAR-10: a path, 'auto' or 'download' (default: %(default)s)")
    p.add_argument('--runs', type=Path, default=ROOT/'runs'/'plan', help='where the run folders go (default: %(default)s)')
    p.add_argument('--results', type=Path, default=ROOT/'bench'/'results'/'plan', help='where the records go (default: %(default)s)')
    p.add_argument('--summary', type=Path, default=ROOT/'bench'/'results'/'summary.md', help='the summary (default: %(default)s)')
    p.add_argument('--only', nargs='+', help='run only these settings or run names')
    p.add_argument('--device', default=None, help='cuda, mps or cpu (default: the best available)')
    p.add_argument('--workers', type=int, default=None, help='DataLoader workers per run (default: eva_cam\'s)')
    p.add_argument('--jobs', type=int, default=1, help='runs at once, each its own process (a GPU: several; default: %(default)s)')
    p.add_argument('--summary-only', action='store_true', help='train nothing: only rewrite the summary from the records')
    a = p.parse_args(argv)
    # `timeout` (bench/gpu_plan.sh) or a kill stops a run with SIGTERM: raise SystemExit instead, so that `finally`
    # blocks run: the stopped run's record is written, and the runs of --jobs are stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    specs = expand(json.loads(a.plan.read_text()))
    todo = [s for s in specs if not a.only or s['setting'] in a.only or s['name'] in a.only]
    if a.only and not todo: p.error(f"--only {' '.join(a.only)}: no such setting or run in {a.plan}")
    if not a.summary_only:
        if a.jobs > 1: _run_parallel(todo, a)
        else:
            from eva_cam.data import load_cifar10
            data = load_cifar10(a.data)  # decoded once for all the runs of this call
            for s in todo:
                t0 = time.time()
                print(f"{s['name']}: {run_one(s, data, a.runs, a.results, a.device, a.workers)} ({time.time() - t0:.0f} s)", flush=True)
    a.summary.parent.mkdir(parents=True, exist_ok=True)
    a.summary.write_text(summary(specs, a.results))
    print(f"summary in {a.summary}")


def _run_parallel(todo: list[dict], a):
    "Several runs at once, each in a process of its own (`--only NAME --jobs 1`); fails if any of them failed."
    common = ['--plan', str(a.plan), '--data', a.data, '--runs', str(a.runs), '--results', str(a.results),
              '--summary', os.devnull] + (['--device', a.device] if a.device else []) + (['--workers', str(a.workers)] if a.workers is not None else [])
    waiting, running, failed = list(todo), [], []
    try:
        while waiting or running:
            while waiting and len(running) < a.jobs:
                s = waiting.pop(0)
                running.append((s, subprocess.Popen([sys.executable, __file__, '--only', s['name'], *common])))
            time.sleep(1)
            for s, proc in [r for r in running if r[1].poll() is not None]:
                running.remove((s, proc))
                if proc.returncode: failed.append(s['name'])
    finally:  # stopped (SIGTERM, Ctrl-C): stop the runs, each writes its record on the way out
        for _, proc in running: proc.terminate()
        for _, proc in running: proc.wait()
    if failed: raise SystemExit(f"These runs failed (their records say where they got to): {failed}")


if __name__ == '__main__':
    main()
