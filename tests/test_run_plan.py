"""bench/run_plan.py on the bundled sample: it trains each run of a plan (a weight average's by
bench/averaging.py), skips the finished, re-runs those whose settings changed, resumes the stopped, and writes
records and a summary from the runs' own files."""
import importlib.util, json, shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location('run_plan', ROOT/'bench'/'run_plan.py')
run_plan = importlib.util.module_from_spec(spec); spec.loader.exec_module(run_plan)

TINY = {'recipe': 'fast', 'limit': 64, 'batch_size': 32}
PLAN = {'runs': [{'setting': 'tiny', 'epochs': 2, 'seeds': [0, 1], **TINY},
                 {'setting': 'tiny-ls0', 'epochs': 1, 'seeds': [0], 'set': {'label_smoothing': 0.0}, **TINY},
                 {'setting': 'tiny-ema', 'epochs': 1, 'set': {'label_smoothing': 0.0, 'ema': 0.9}, **TINY}]}
NAMES = ['tiny-ema-seed0', 'tiny-ls0-seed0', 'tiny-seed0', 'tiny-seed1']
rec_of = lambda d, name: json.loads((d/'results'/f'{name}.json').read_text())


def plan_args(d: Path, plan: Path|None = None) -> list:
    "The command line that runs the plan in `d` (or `plan`) into `d`."
    return ['--plan', str(plan or d/'plan.json'), '--data', 'sample', '--runs', str(d/'runs'),
            '--results', str(d/'results'), '--summary', str(d/'summary.md'), '--device', 'cpu']


def summary_rows(d: Path, results: Path, setting: str = 'tiny') -> list:
    "The summary's rows of `setting`, rewritten from `results` (cells as strings)."
    run_plan.main(['--plan', str(d/'plan.json'), '--results', str(results), '--summary', str(results/'s.md'),
                   '--summary-only'])
    return [[c.strip() for c in l.strip('|').split('|')] for l in (results/'s.md').read_text().splitlines()
            if l.startswith(f'| {setting} |')]


@pytest.fixture(scope='module')
def done(tmp_path_factory):
    "The plan run once on the sample: (folder, the script's arguments)."
    d = tmp_path_factory.mktemp('plan')
    (d/'plan.json').write_text(json.dumps(PLAN))
    run_plan.main(plan_args(d))
    return d, plan_args(d)


def test_records(done):
    d, _ = done
    assert sorted(p.stem for p in (d/'results').iterdir()) == NAMES
    for name, seed, epochs in (('tiny-seed0', 0, 2), ('tiny-seed1', 1, 2), ('tiny-ls0-seed0', 0, 1)):
        rec, m = rec_of(d, name), json.loads((d/'runs'/name/'metrics.json').read_text())
        assert rec['finished'] and rec['seed'] == seed and rec['recipe_as_run']['seed'] == seed
        assert len(rec['test_acc_per_epoch']) == len(rec['seconds_per_epoch']) == epochs
        assert rec['final_test_acc'] == m['final_test_acc']
        assert rec['final_test_acc_flip_tta'] == m['final_tta_acc']
        assert rec['test_images'] == 64 and rec['train_images_per_second'] > 0
        for key in ('device', 'device_name', 'torch_version', 'git_commit', 'run_finished'):
            assert key in rec, key
        rows = [(r['from_epoch'], r['device_name'], r['precision']) for r in rec['machines']]
        assert rows == [(1, rec['device_name'], rec['precision'])]
        spec = next(s for s in run_plan.expand(PLAN) if s['name'] == name)
        assert rec['settings'] == {k: spec[k] for k in run_plan.SETTINGS}
    assert rec_of(d, 'tiny-ls0-seed0')['recipe_as_run']['label_smoothing'] == 0.0
    a, b = (rec_of(d, f'tiny-seed{s}')['train_acc_per_epoch'] for s in (0, 1))
    assert a != b  # the two seeds trained differently


def test_averaging_run(done):
    "An entry with a weight average is trained by bench/averaging.py; the average never changes the training."
    d, _ = done
    rec, plain = rec_of(d, 'tiny-ema-seed0'), rec_of(d, 'tiny-ls0-seed0')
    assert rec['finished'] and rec['recipe_as_run']['ema'] == 0.9 and rec['epochs_done'] == 1
    assert rec['final_raw_test_acc'] == plain['final_test_acc']  # its trained weights: tiny-ls0's run
    assert rec['train_acc_per_epoch'] == plain['train_acc_per_epoch']
    assert sorted(p.name for p in (d/'runs'/'tiny-ema-seed0').iterdir() if not p.name.startswith('.')) == [
        'checkpoint.pt', 'config.json', 'curves.png', 'history.json', 'metrics.json']


def test_summary(done):
    d, _ = done
    accs = [100 * rec_of(d, f'tiny-seed{s}')['final_test_acc'] for s in (0, 1)]
    row = next(l for l in (d/'summary.md').read_text().splitlines() if l.startswith('| tiny |'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[3] == '2 of 2'
    assert cells[4:7] == [f'{sum(accs) / 2:.2f}', f'{min(accs):.2f}', f'{max(accs):.2f}']


def test_summary_per_device(done, tmp_path):
    "Seeds run on two devices are not averaged together: one row per device."
    d, _ = done
    shutil.copytree(d/'results', tmp_path/'results')
    recs = {s: rec_of(d, f'tiny-seed{s}') for s in (0, 1)}
    other = [{**recs[1]['machines'][0], 'device_name': 'Another device'}]
    seed1 = tmp_path/'results'/'tiny-seed1.json'
    seed1.write_text(json.dumps({**recs[1], 'device_name': 'Another device', 'machines': other}))
    rows = summary_rows(d, tmp_path/'results')
    acc = lambda s: f"{100 * recs[s]['final_test_acc']:.2f}"
    here, prec = recs[0]['device_name'], recs[0]['precision']
    want = [('1 of 2', acc(0), f'{here}, {prec}'), ('1 of 2', acc(1), f'Another device, {prec}')]
    assert sorted((r[3], r[4], r[11]) for r in rows) == sorted(want)
    # one device in two precisions (two CPUs of one name, 'auto' bf16 on one, fp32 on the other): two rows too
    other = [{**recs[1]['machines'][0], 'precision': 'fp16' if prec != 'fp16' else 'fp32'}]
    seed1.write_text(json.dumps({**recs[1], 'machines': other}))
    assert len(summary_rows(d, tmp_path/'results')) == 2
    # a record from before the list: its own device and precision fields
    old = {k: v for k, v in recs[1].items() if k != 'machines'}
    assert run_plan.where(old) == f"{recs[1]['device_name']}, {recs[1]['precision']}"


def test_summary_resumed_elsewhere(done, tmp_path):
    "A run resumed on another machine is not averaged with the others: its row says which epochs ran where."
    d, _ = done
    shutil.copytree(d/'results', tmp_path/'results')
    rec = rec_of(d, 'tiny-seed1')
    a, here = rec['machines'][0], f"{rec['device_name']}, {rec['precision']}"
    b = {**a, 'from_epoch': 2, 'device_name': 'B', 'precision': 'bf16'}
    (tmp_path/'results'/'tiny-seed1.json').write_text(json.dumps({**rec, 'machines': [a, b]}))
    devices = sorted(r[11] for r in summary_rows(d, tmp_path/'results'))
    assert devices == sorted([here, f"epochs 1-1: {here}; epochs 2-2: B, bf16"])
    # resumed on the same machine: one stretch; begun before the list existed: its first epochs not recorded
    assert run_plan.where({**rec, 'machines': [a, {**a, 'from_epoch': 2}]}) == here
    assert (run_plan.where({**rec, 'epochs_done': 4, 'machines': [{**a, 'from_epoch': 3}]})
            == f"epochs 1-2: not recorded; epochs 3-4: {here}")
    three = [a, {**a, 'from_epoch': 2}, {**b, 'from_epoch': 3}]
    assert (run_plan.where({**rec, 'epochs_done': 4, 'machines': three})
            == f"epochs 1-2: {here}; epochs 3-4: B, bf16")


def test_minutes_to():
    "How soon a run first reaches an accuracy: issue 20's CPU run reached 88.51% after its last epoch."
    rec = json.loads((ROOT/'bench'/'results'/'plan'/'fast12-resize16x4-translate2-seed0.json').read_text())
    assert run_plan.minutes_to(rec, 0.8851) == pytest.approx(sum(rec['seconds_per_epoch']) / 60)
    # 79.04% after 6 epochs, 81.23% after 8
    assert run_plan.minutes_to(rec, 0.80) == pytest.approx(sum(rec['seconds_per_epoch'][:8]) / 60)
    assert run_plan.minutes_to(rec, 0.95) is None


def test_summary_minutes_to(done, tmp_path):
    "The summary's minutes to 88.51%: the mean over the seeds that reached it, and how many did."
    d, _ = done
    shutil.copytree(d/'results', tmp_path/'results')
    rec = {**rec_of(d, 'tiny-seed0'), 'test_acc_per_epoch': [0.5, 0.9], 'seconds_per_epoch': [60, 120]}
    (tmp_path/'results'/'tiny-seed0.json').write_text(json.dumps(rec))
    [row] = summary_rows(d, tmp_path/'results')
    assert row[10] == '3.00 (1 of 2 seeds)'  # seed 1, trained on 64 images, never gets there


def test_skip_finished(done, capsys):
    d, args = done
    stamps = {p: p.stat().st_mtime_ns for p in (d/'runs').rglob('*.pt')}
    run_plan.main(args)
    assert capsys.readouterr().out.count('skipped (finished)') == len(NAMES)
    assert stamps == {p: p.stat().st_mtime_ns for p in (d/'runs').rglob('*.pt')}  # nothing trained again


def test_settings_compared():
    "A record's settings: its own, or for a record from before they were kept, those of the recipe it ran."
    rec = json.loads((ROOT/'bench'/'results'/'plan'/'fast15-bs256-seed0.json').read_text())
    assert 'settings' not in rec
    plan = {'setting': 'fast15-bs256', 'recipe': 'fast', 'epochs': 15, 'set': {'lr': 0.2}, 'batch_size': 256}
    [spec] = run_plan.expand({'runs': [plan]})
    assert run_plan.differences(spec, run_plan.recorded_settings(rec, spec)) == []
    [spec] = run_plan.expand({'runs': [{**plan, 'epochs': 8, 'set': {'lr': 0.3}}]})
    assert run_plan.differences(spec, run_plan.recorded_settings(rec, spec)) == [
        'epochs: 15, 8', "set: {'lr': 0.2}, {'lr': 0.3}"]
    [spec] = run_plan.expand({'runs': [{**plan, 'batch_size': None}]})  # null: the recipe's 128
    assert run_plan.differences(spec, run_plan.recorded_settings(rec, spec)) == ['batch_size: 256, None']


def test_rerun_changed(done, tmp_path, capsys):
    "A finished run whose plan entry changed is trained again, not skipped, and the log says why."
    d, _ = done
    for f in ('runs', 'results'): shutil.copytree(d/f, tmp_path/f)
    changed = {'runs': [{**r, 'set': {'label_smoothing': 0.05}} if r['setting'] == 'tiny-ls0' else r
                        for r in PLAN['runs']]}
    (tmp_path/'plan.json').write_text(json.dumps(changed))
    run_plan.main(plan_args(tmp_path) + ['--only', 'tiny-ls0', 'tiny-seed0'])
    out = capsys.readouterr().out
    assert "tiny-ls0-seed0: its record was made with other settings (record's, plan's: " in out
    assert "set: {'label_smoothing': 0.0}, {'label_smoothing': 0.05}" in out
    assert 'tiny-ls0-seed0: re-run (settings changed)' in out and 'tiny-seed0: skipped (finished)' in out
    rec = rec_of(tmp_path, 'tiny-ls0-seed0')
    assert rec['finished'] and rec['recipe_as_run']['label_smoothing'] == 0.05
    assert rec['settings']['set'] == {'label_smoothing': 0.05}


def test_resume_stopped(done, capsys):
    "A run stopped after its last checkpoint, before metrics.json, resumes: no epoch trained again, a record."
    d, args = done
    run = d/'runs'/'tiny-seed0'
    history = json.loads((run/'history.json').read_text())
    for f in ('metrics.json', 'curves.png'): (run/f).unlink()
    (d/'results'/'tiny-seed0.json').unlink()
    run_plan.main(args + ['--only', 'tiny-seed0'])
    assert 'tiny-seed0: resumed' in capsys.readouterr().out
    rec = rec_of(d, 'tiny-seed0')
    assert rec['finished'] and rec['seconds_per_epoch'] == history['seconds']  # not trained again


@pytest.mark.parametrize('entry, says', [
    ({'setting': 'x', 'recipe': 'fast'}, "entry 1 (setting 'x'): no 'epochs'"),
    ({'setting': 'x', 'recipe': 'fast', 'epochs': '8'}, "entry 1 (setting 'x'): epochs='8', expected a"),
    ({'setting': 'x', 'recipe': 'fast', 'epochs': 8, 'seeds': 0}, "seeds=0, expected a list of integers"),
    ({'setting': 'x', 'recipe': 'fast', 'epochs': 8, 'seed': 1}, "entry 1 (setting 'x'): unknown key 'seed'"),
    ({'setting': 'x', 'recipe': 'fast', 'epochs': 8, 'set': {'compile': True}}, "'set': Unknown recipe keys"),
    ({'setting': 'x', 'recipe': 'fast', 'epochs': 8, 'set': {'ema': 0.9, 'lookahead': 0.5}}, 'exactly one'),
    ({'setting': 'x', 'recipe': 'fast', 'epochs': 8, 'set': {'swa_epochs': 9}}, 'swa_epochs=9: expected'),
    ({'recipe': 'fast', 'epochs': 8}, "entry 1: no 'setting'"),
    ('fast', "entry 1: expected a dict"),
])
def test_bad_plan_entry(tmp_path, capsys, entry, says):
    "A malformed plan gives one line naming the entry and the key, not a traceback."
    (tmp_path/'plan.json').write_text(json.dumps({'runs': [entry]}))
    with pytest.raises(SystemExit) as e:
        run_plan.main(['--plan', str(tmp_path/'plan.json'), '--summary-only'])
    line = str(e.value)
    assert says in line and line.startswith(str(tmp_path/'plan.json')) and '\n' not in line


def test_bad_plan(tmp_path):
    (tmp_path/'plan.json').write_text(json.dumps({'runs': [PLAN['runs'][0], PLAN['runs'][0]]}))
    with pytest.raises(SystemExit, match='names a run twice'):
        run_plan.main(['--plan', str(tmp_path/'plan.json'), '--summary-only'])
    (tmp_path/'plan.json').write_text(json.dumps({'runs': {'setting': 'x'}}))
    with pytest.raises(SystemExit, match="'runs' is a list"):
        run_plan.main(['--plan', str(tmp_path/'plan.json'), '--summary-only'])
    with pytest.raises(SystemExit):
        run_plan.main(['--plan', str(ROOT/'bench'/'plan.json'), '--only', 'nope', '--summary-only'])
    (tmp_path/'plan.json').write_text('{"runs": [')  # cut short
    with pytest.raises(SystemExit, match='plan.json: Expecting value'):
        run_plan.main(['--plan', str(tmp_path/'plan.json'), '--summary-only'])
    with pytest.raises(SystemExit, match='none.json: No such file'):
        run_plan.main(['--plan', str(tmp_path/'none.json'), '--summary-only'])


def test_stopped_by_sigterm(tmp_path):
    "SIGTERM (`timeout` in bench/gpu_plan.sh) stops every run of --jobs; each writes an unfinished record."
    import signal, subprocess, sys, time
    plan = {'runs': [{'setting': 'long', 'epochs': 50, 'seeds': [0, 1], **TINY}]}
    (tmp_path/'plan.json').write_text(json.dumps(plan))
    cmd = [sys.executable, str(ROOT/'bench'/'run_plan.py'), *plan_args(tmp_path), '--jobs', '2']
    proc = subprocess.Popen(cmd)
    hist = [tmp_path/'runs'/f'long-seed{s}'/'history.json' for s in (0, 1)]
    t0 = time.time()
    while not all(h.is_file() for h in hist) and time.time() - t0 < 300 and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) != 0
    for s in (0, 1):
        rec = rec_of(tmp_path, f'long-seed{s}')
        assert not rec['finished'] and 1 <= rec['epochs_done'] < 50
        assert len(rec['test_acc_per_epoch']) == rec['epochs_done']
