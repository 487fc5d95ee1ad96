"""Run the evidence plan (bench/plan.json): train each run, skip the finished, resume the stopped ones.

Every entry of the plan is a setting (a recipe, its epochs, optional recipe overrides in 'set') and the
seeds to run it with; each seed is one run, named SETTING-seedN, trained into RUNS/NAME by
eva_cam.run.train_run, or by bench/averaging.py when 'set' holds a weight average (ema, swa_epochs,
lookahead). When a run finishes, its record is written to RESULTS/NAME.json from the run's own files
(history.json, metrics.json): per-epoch test accuracy and seconds, final accuracy with and without flip TTA,
the recipe as run (its seed included), device, torch version, commit, date, images per second, the plan's
settings, and `finished`. A run stopped part-way gets a record marked unfinished with its epochs so far; the
next call resumes it from its checkpoint (train_run's resume exactly; an averaging run starts again). A record
is skipped as finished only if its settings (recipe, epochs, set, seed, limit, batch_size) are the plan's;
otherwise the run is trained again, and the log says so. bench/results/summary.md gives, per setting, the
mean, min and max over seeds. Records and the summary are written by this script only, never by hand.

    python bench/run_plan.py --data ../shared/data/cifar10-jpeg.tar.gz          # the whole plan, in order
    nohup nice python bench/run_plan.py --data ../shared/data/cifar10-jpeg.tar.gz --runs /root/eva_runs \\
        > plan.log 2>&1 &
    python bench/run_plan.py --data ... --only s10 fast8-seed1                 # some runs (settings or names)
    python bench/run_plan.py --data ... --device cuda --jobs 4                 # a GPU: four runs at once
    python bench/run_plan.py --summary-only                                    # only rewrite summary.md
"""
from __future__ import annotations
import argparse, datetime, json, os, signal, statistics, subprocess, sys, time
from pathlib import Path

from eva_cam.core import is_int
from eva_cam.run import RECIPES, REPORTED_ACCURACY, get_recipe, train_run

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/averaging.py, beside this script
from averaging import split_average, train_averaged

ROOT = Path(__file__).resolve().parent.parent
AVERAGES = ('ema', 'swa_epochs', 'lookahead')  # 'set' keys trained by bench/averaging.py, not train_run
SETTINGS = ('recipe', 'epochs', 'set', 'seed', 'limit', 'batch_size')  # what makes a run; records keep them
_count = lambda v: v is None or is_int(v, 1)
ENTRY = {  # key of a plan entry: (test of its value, what is expected); the first three are required
    'setting': (lambda v: isinstance(v, str) and bool(v.strip()), 'a name'),
    'recipe': (lambda v: v in RECIPES, f"one of {tuple(RECIPES)}"),
    'epochs': (lambda v: is_int(v, 1), 'a positive integer'),
    'seeds': (lambda v: isinstance(v, list) and bool(v) and all(is_int(x) for x in v), 'a list of integers'),
    'set': (lambda v: isinstance(v, dict), 'a dict of recipe keys and values'),
    'limit': (_count, 'a positive integer or null'), 'batch_size': (_count, 'a positive integer or null'),
    'why': (lambda v: isinstance(v, str), 'a sentence'),
}


def check_entry(i: int, s) -> None:
    "Raise a ValueError naming the plan's entry `i` (from 1) and its first bad key."
    named = isinstance(s, dict) and isinstance(s.get('setting'), str)
    name = f"entry {i}" + (f" (setting {s['setting']!r})" if named else '')
    if not isinstance(s, dict): raise ValueError(f"{name}: expected a dict of {list(ENTRY)}, got {s!r}")
    for key in list(ENTRY)[:3]:
        if key not in s: raise ValueError(f"{name}: no {key!r} (required: {list(ENTRY)[:3]})")
    for key, value in s.items():
        if key not in ENTRY: raise ValueError(f"{name}: unknown key {key!r} (expected some of {list(ENTRY)})")
        ok, expected = ENTRY[key]
        if not ok(value): raise ValueError(f"{name}: {key}={value!r}, expected {expected}")
    over = {k: v for k, v in s.get('set', {}).items() if k not in AVERAGES}
    try:
        get_recipe(s['recipe'], epochs=s['epochs'], **over)
        if len(over) < len(s.get('set', {})): split_average(s['set'], s['epochs'])
    except ValueError as e: raise ValueError(f"{name}: 'set': {e}") from None


def expand(plan: dict) -> list[dict]:
    "One spec per run: the plan's settings times their seeds, in the plan's order; ValueError for a bad plan."
    if not isinstance(plan, dict) or not isinstance(plan.get('runs'), list):
        raise ValueError("expected a JSON object whose 'runs' is a list of entries")
    specs = []
    for i, s in enumerate(plan['runs'], 1):
        check_entry(i, s)
        for seed in s.get('seeds', [0]):
            specs.append({'name': f"{s['setting']}-seed{seed}", 'setting': s['setting'],
                          'recipe': s['recipe'], 'epochs': s['epochs'], 'seed': seed, 'set': s.get('set', {}),
                          'limit': s.get('limit'), 'batch_size': s.get('batch_size')})
    names = [s['name'] for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice: raise ValueError(f"The plan names a run twice: {twice}")
    return specs


def recorded_settings(rec: dict, spec: dict) -> dict|None:
    "The settings a record's run was made with: its own, or (older records) read from the recipe it ran."
    if 'settings' in rec: return rec['settings']
    cfg = rec.get('recipe_as_run')
    if cfg is None: return None  # an unfinished record from before records kept their settings
    return {'recipe': cfg.get('recipe'), 'epochs': cfg.get('epochs'), 'seed': cfg.get('seed'),
            'limit': cfg.get('limit'), 'batch_size': cfg.get('batch_size'),
            'set': {k: cfg.get(k) for k in spec['set']}}  # the keys the plan sets, as they were run


def differences(spec: dict, said: dict) -> list[str]:
    "How the settings `said` of a record differ from the plan's `spec`: 'key: record's, plan's' each."
    batch = lambda s: s['batch_size'] or RECIPES.get(s['recipe'], {}).get('batch_size')  # null: the recipe's
    return [f"{k}: {said[k]!r}, {spec[k]!r}" for k in SETTINGS
            if (batch(said) != batch(spec) if k == 'batch_size' else said[k] != spec[k])]


def machines(run: Path) -> list[dict]:
    "Where the run in `run` trained (a row per start or resume): metrics.json's list, else history.json's."
    for f in ('metrics.json', 'history.json'):
        try:
            if (run/f).is_file(): return json.loads((run/f).read_text()).get('machines', [])
        except (ValueError, OSError): pass  # written while a run stops: it must not hide why the run stopped
    return []


def _label(m: dict) -> str:
    "A machine as the summary names it: the device's name, the precision, and the processes if more than one."
    many = f", {m['processes']} processes" if m.get('processes', 1) > 1 else ''
    return f"{m['device_name']}, {m['precision']}{many}"


def where(rec: dict) -> str:
    "Where a finished record's run trained; for a run resumed elsewhere, which epochs ran where."
    rows = rec.get('machines') or []
    if not rows: return _label(rec)  # a record from before the list: metrics.json's last machine
    rows = [m for i, m in enumerate(rows) if i == 0 or _label(m) != _label(rows[i - 1])]  # one stretch each
    labels = [_label(m) for m in rows]
    if rows[0]['from_epoch'] > 1:  # begun before the list existed
        rows, labels = [{'from_epoch': 1}] + rows, ['not recorded'] + labels
    if len(rows) == 1: return labels[0]
    ends = [m['from_epoch'] - 1 for m in rows[1:]] + [rec['epochs_done']]
    return '; '.join(f"epochs {m['from_epoch']}-{end}: {label}" for m, end, label in zip(rows, ends, labels))


def record(run: Path, spec: dict) -> dict:
    "The record of the run folder `run`: finished (metrics.json is there) or its epochs so far."
    h = json.loads((run/'history.json').read_text()) if (run/'history.json').is_file() else None
    rec = {'name': spec['name'], 'setting': spec['setting'], 'seed': spec['seed'], 'finished': False,
           'settings': {k: spec[k] for k in SETTINGS},  # a changed plan entry is trained again
           'epochs_planned': spec['epochs'], 'epochs_done': len(h['test_acc']) if h else 0,
           'test_acc_per_epoch': h['test_acc'] if h else [], 'seconds_per_epoch': h['seconds'] if h else [],
           'machines': machines(run),  # which epochs trained where: runs on a CPU are resumed across sessions
           'record_written': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
           'run_folder': str(run)}
    if not (run/'metrics.json').is_file(): return rec
    m = json.loads((run/'metrics.json').read_text())
    images = m['train_images'] * m['epochs']
    rec.update(finished=True, final_test_acc=m['final_test_acc'], final_test_acc_flip_tta=m['final_tta_acc'],
               final_raw_test_acc=m.get('final_raw_test_acc', m['final_test_acc']),  # an average's: its own
               best_test_acc=m['best_test_acc'], best_epoch=m['best_epoch'],
               train_acc_per_epoch=h['train_acc'], lr_per_epoch=h['lr'],
               reported_acc=REPORTED_ACCURACY.get(m['recipe']),
               recipe_as_run=m['config'],
               device=m['device'], device_name=m['device_name'], precision=m['precision'],
               processes=m.get('processes', 1), cpu_capability=m.get('cpu_capability'),
               cpu_has_bf16=m.get('cpu_has_bf16'), augmentation=m.get('augmentation', 'on the device (augment_batch)'),
               torch_version=m['torch_version'], python_version=m['python_version'],
               data_source=m['data_source'], train_images=m['train_images'], test_images=m['test_images'],
               total_minutes=m['total_seconds'] / 60,
               train_images_per_second=images / m['total_seconds'],  # testing included: a whole epoch's rate
               git_commit=m['git_commit'], run_finished=m['date'])
    return rec


def write_json(path: Path, obj: dict):
    "Write `obj` to `path` through a temporary file, so a record is never half-written."
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    tmp.write_text(json.dumps(obj, indent=1) + '\n'); os.replace(tmp, path)


def run_one(spec: dict, data, runs: Path, results: Path, device=None) -> str:
    "Train (or resume, or skip) one run and write its record; returns what was done."
    rec_path, run = results/f"{spec['name']}.json", runs/spec['name']
    rec = json.loads(rec_path.read_text()) if rec_path.is_file() else None
    said = recorded_settings(rec, spec) if rec else None
    diff = differences(spec, said) if said else []
    if rec and rec.get('finished') and not diff: return 'skipped (finished)'
    if diff: print(f"{spec['name']}: its record was made with other settings (record's, plan's: "
                   f"{'; '.join(diff)}): training it again", flush=True)
    started = (run/'checkpoint.pt').is_file() or (run/'history.json').is_file()
    averaged = any(k in spec['set'] for k in AVERAGES)  # bench/averaging.py: a stopped run starts again
    resume = (run/'checkpoint.pt').is_file() and not diff and not averaged
    kw = dict(data=data, out=run, epochs=spec['epochs'], batch_size=spec['batch_size'], device=device,
              limit=spec['limit'], seed=spec['seed'], force=started and not resume,
              **spec['set'])
    try:
        if averaged: train_averaged(spec['recipe'], **kw)
        else: train_run(spec['recipe'], resume=resume, **kw)
    finally:  # finished or not, the record says where the run got to
        if os.environ.get('RANK', '0') == '0' and (run/'history.json').is_file():
            write_json(rec_path, record(run, spec))
    if diff: return 're-run (settings changed)'
    return 'resumed' if resume else 'restarted' if started else 'trained'


def minutes_to(rec: dict, target: float) -> float|None:
    "Minutes of a record's epochs (with testing) until its test accuracy first reaches `target`, or None."
    for epoch, acc in enumerate(rec['test_acc_per_epoch']):
        if acc >= target: return sum(rec['seconds_per_epoch'][:epoch + 1]) / 60
    return None


def summary(specs: list[dict], results: Path) -> str:
    "Markdown: per setting, the finished seeds' mean, min and max test accuracy (and flip TTA), from records."
    goal = REPORTED_ACCURACY['s10']  # issue 20's CPU time target: how soon a run first reaches it
    lines = ['# Evidence runs: summary', '',
             'Written by `bench/run_plan.py` from the records in `bench/results/plan/` (one per run). '
             'Test accuracy after the last epoch, in %; mean, min and max over the finished seeds, one row '
             'per device and precision (a run resumed on another machine or in another precision: a row of '
             f'its own, saying which epochs ran where). Minutes to {100 * goal:.2f}% (the S10 write-up): the '
             'epochs until a run first reaches it, mean over the seeds that did.', '',
             '| setting | recipe | epochs | seeds finished | mean | min | max | flip TTA mean | write-up | '
             f'minutes per run | minutes to {100 * goal:.2f}% | device, precision |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for setting in dict.fromkeys(s['setting'] for s in specs):
        mine = [s for s in specs if s['setting'] == setting]
        paths = [results/f"{s['name']}.json" for s in mine]
        recs = [json.loads(p.read_text()) for p in paths if p.is_file()]
        by_device = {}  # seeds are compared on one device (one seed differed by 0.54 points between two)
        for r in recs:
            if r.get('finished'): by_device.setdefault(where(r), []).append(r)
        partial = [f"{r['name']}: {r['epochs_done']}/{r['epochs_planned']} epochs" for r in recs
                   if not r.get('finished')]
        written = REPORTED_ACCURACY.get(mine[0]['recipe']) if not mine[0]['set'] else None  # the write-up's
        f = lambda xs: f"{statistics.mean(xs):.2f}" if xs else '–'
        for i, (device, done) in enumerate(by_device.items() if by_device else [('–', [])]):
            accs = [100 * r['final_test_acc'] for r in done]
            soon = [m for m in (minutes_to(r, goal) for r in done) if m is not None]
            soon = f(soon) + (f' ({len(soon)} of {len(done)} seeds)' if 0 < len(soon) < len(done) else '')
            lo, hi = (f'{min(accs):.2f}', f'{max(accs):.2f}') if accs else ('–', '–')
            seeds = f"{len(done)} of {len(mine)}" + (f" ({'; '.join(partial)})" if partial and i == 0 else '')
            cells = [setting, mine[0]['recipe'], mine[0]['epochs'], seeds,
                     f(accs), lo, hi, f([100 * r['final_test_acc_flip_tta'] for r in done]),
                     f'{100 * written:.2f}' if written else '–', f([r['total_minutes'] for r in done]), soon,
                     device]
            lines.append('| ' + ' | '.join(str(c) for c in cells) + ' |')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arg = lambda name, default, what, **kw: p.add_argument(name, default=default, help=f'{what} (default: '
                                                           '%(default)s)', **kw)
    arg('--plan', ROOT/'bench'/'plan.json', 'the plan', type=Path)
    arg('--data', 'auto', "the full CIFAR-10: a path, 'auto' or 'download'")
    arg('--runs', ROOT/'runs'/'plan', 'where the run folders go', type=Path)
    arg('--results', ROOT/'bench'/'results'/'plan', 'where the records go', type=Path)
    arg('--summary', ROOT/'bench'/'results'/'summary.md', 'the summary', type=Path)
    p.add_argument('--only', nargs='+', help='run only these settings or run names')
    p.add_argument('--device', default=None, help='cuda, mps or cpu (default: the best available)')
    arg('--jobs', 1, 'runs at once, each its own process (a GPU: several)', type=int)
    p.add_argument('--summary-only', action='store_true', help='train nothing: only rewrite the summary')
    a = p.parse_args(argv)
    # `timeout` (bench/gpu_plan.sh) or a kill stops a run with SIGTERM: raise SystemExit instead, so that
    # `finally` blocks run: the stopped run's record is written, and the runs of --jobs are stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try: specs = expand(json.loads(a.plan.read_text()))
    except OSError as e: raise SystemExit(f"{a.plan}: {e.strerror}") from None  # one line, not a traceback
    except ValueError as e: raise SystemExit(f"{a.plan}: {e}") from None
    todo = [s for s in specs if not a.only or s['setting'] in a.only or s['name'] in a.only]
    if a.only and not todo: p.error(f"--only {' '.join(a.only)}: no such setting or run in {a.plan}")
    if not a.summary_only:
        if a.jobs > 1: _run_parallel(todo, a)
        else:
            from eva_cam.data import load_cifar10
            data = load_cifar10(a.data)  # decoded once for all the runs of this call
            for s in todo:
                t0 = time.time()
                done = run_one(s, data, a.runs, a.results, a.device)
                print(f"{s['name']}: {done} ({time.time() - t0:.0f} s)", flush=True)
    a.summary.parent.mkdir(parents=True, exist_ok=True)
    a.summary.write_text(summary(specs, a.results))
    print(f"summary in {a.summary}")


def _run_parallel(todo: list[dict], a):
    "Several runs at once, each in a process of its own (`--only NAME --jobs 1`); fails if any of them did."
    common = ['--plan', str(a.plan), '--data', a.data, '--runs', str(a.runs), '--results', str(a.results),
              '--summary', os.devnull] + (['--device', a.device] if a.device else [])
    waiting, running, failed = list(todo), [], []
    try:
        while waiting or running:
            while waiting and len(running) < a.jobs:
                s = waiting.pop(0)
                cmd = [sys.executable, __file__, '--only', s['name'], *common]
                running.append((s, subprocess.Popen(cmd)))
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
