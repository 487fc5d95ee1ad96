"""bench/run_plan.py on the bundled sample: it trains each run of a plan, skips the finished, resumes the stopped,
and writes records and a summary from the runs' own files."""
import importlib.util, json, shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location('run_plan', ROOT/'bench'/'run_plan.py')
run_plan = importlib.util.module_from_spec(spec); spec.loader.exec_module(run_plan)

PLAN = {'runs': [{'setting': 'tiny', 'recipe': 'fast', 'epochs': 2, 'seeds': [0, 1], 'limit': 64, 'batch_size': 32},
                 {'setting': 'tiny-ls0', 'recipe': 'fast', 'epochs': 1, 'seeds': [0], 'limit': 64, 'batch_size': 32,
                  'set': {'label_smoothing': 0.0}}]}


@pytest.fixture(scope='module')
def done(tmp_path_factory):
    "The plan run once on the sample: (folder, the script's output)."
    d = tmp_path_factory.mktemp('plan')
    (d/'plan.json').write_text(json.dumps(PLAN))
    args = ['--plan', str(d/'plan.json'), '--data', 'sample', '--runs', str(d/'runs'), '--results', str(d/'results'),
            '--summary', str(d/'summary.md'), '--device', 'cpu', '--workers', '0']
    run_plan.main(args)
    return d, args


def test_records(done):
    d, _ = done
    assert sorted(p.name for p in (d/'results').iterdir()) == ['tiny-ls0-seed0.json', 'tiny-seed0.json', 'tiny-seed1.json']
    for name, seed, epochs in (('tiny-seed0', 0, 2), ('tiny-seed1', 1, 2), ('tiny-ls0-seed0', 0, 1)):
        rec = json.loads((d/'results'/f'{name}.json').read_text())
        m = json.loads((d/'runs'/name/'metrics.json').read_text())
        assert rec['finished'] and rec['seed'] == seed and rec['recipe_as_run']['seed'] == seed
        assert len(rec['test_acc_per_epoch']) == len(rec['seconds_per_epoch']) == epochs
        assert (rec['final_test_acc'], rec['final_test_acc_flip_tta']) == (m['final_test_acc'], m['final_tta_acc'])
        assert rec['test_images'] == 64 and rec['train_images_per_second'] > 0
        for key in ('device', 'device_name', 'torch_version', 'git_commit', 'run_finished'): assert key in rec, key
        assert [(r['from_epoch'], r['device_name'], r['precision'], r['processes']) for r in rec['machines']] == [(1, rec['device_name'], rec['precision'], 1)]
    assert json.loads((d/'results'/'tiny-ls0-seed0.json').read_text())['recipe_as_run']['label_smoothing'] == 0.0
    # the two seeds trained differently
    a, b = (json.loads((d/'results'/f'tiny-seed{s}.json').read_text())['train_acc_per_epoch'] for s in (0, 1))
    assert a != b


def test_summary(done):
    d, _ = done
    accs = [100 * json.loads((d/'results'/f'tiny-seed{s}.json').read_text())['final_test_acc'] for s in (0, 1)]
    row = next(l for l in (d/'summary.md').read_text().splitlines() if l.startswith('| tiny |'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[3] == '2 of 2'
    assert cells[4:7] == [f'{sum(accs) / 2:.2f}', f'{min(accs):.2f}', f'{max(accs):.2f}']



def test_summary_per_device(done, tmp_path):
    "Seeds run on two devices are not averaged together: one row per device."
    d, _ = done
    shutil.copytree(d/'results', tmp_path/'results')
    recs = {s: json.loads((d/'results'/f'tiny-seed{s}.json').read_text()) for s in (0, 1)}
    other = [{**recs[1]['machines'][0], 'device_name': 'Another device'}]
    (tmp_path/'results'/'tiny-seed1.json').write_text(json.dumps({**recs[1], 'device_name': 'Another device', 'machines': other}))
    run_plan.main(['--plan', str(d/'plan.json'), '--results', str(tmp_path/'results'), '--summary', str(tmp_path/'summary.md'), '--summary-only'])
    rows = [[c.strip() for c in l.strip('|').split('|')] for l in (tmp_path/'summary.md').read_text().splitlines() if l.startswith('| tiny |')]
    acc = lambda s: f"{100 * recs[s]['final_test_acc']:.2f}"
    here, prec = recs[0]['device_name'], recs[0]['precision']
    assert sorted((r[3], r[4], r[11]) for r in rows) == sorted([('1 of 2', acc(0), f'{here}, {prec}'), ('1 of 2', acc(1), f'Another device, {prec}')])
    # one device in two precisions (two CPUs of one name, 'auto' bf16 on one and fp32 on the other): two rows too
    other = [{**recs[1]['machines'][0], 'precision': 'fp16' if prec != 'fp16' else 'fp32'}]
    (tmp_path/'results'/'tiny-seed1.json').write_text(json.dumps({**recs[1], 'machines': other}))
    run_plan.main(['--plan', str(d/'plan.json'), '--results', str(tmp_path/'results'), '--summary', str(tmp_path/'summary.md'), '--summary-only'])
    assert len([l for l in (tmp_path/'summary.md').read_text().splitlines() if l.startswith('| tiny |')]) == 2
    # a record from before the list: its own device and precision fields
    old = {k: v for k, v in recs[1].items() if k != 'machines'}
    assert run_plan.where(old) == f"{recs[1]['device_name']}, {recs[1]['precision']}"

def test_summary_resumed_elsewhere(done, tmp_path):
    "A run resumed on another machine is not averaged with runs made on one: its row says which epochs ran where."
    d, _ = done
    shutil.copytree(d/'results', tmp_path/'results')
    rec = json.loads((d/'results'/'tiny-seed1.json').read_text())
    a, here = rec['machines'][0], f"{rec['device_name']}, {rec['precision']}"
    b = {**a, 'from_epoch': 2, 'device_name': 'B', 'precision': 'bf16'}
    (tmp_path/'results'/'tiny-seed1.json').write_text(json.dumps({**rec, 'machines': [a, b]}))
    run_plan.main(['--plan', str(d/'plan.json'), '--results', str(tmp_path/'results'), '--summary', str(tmp_path/'summary.md'), '--summary-only'])
    devices = sorted(l.strip('|').split('|')[11].strip() for l in (tmp_path/'summary.md').read_text().splitlines() if l.startswith('| tiny |'))
    assert devices == sorted([here, f"epochs 1-1: {here}; epochs 2-2: B, bf16"])
    # resumed on the same machine: one stretch; begun before the list existed: its first epochs are not recorded
    assert run_plan.where({**rec, 'machines': [a, {**a, 'from_epoch': 2}]}) == here
    assert run_plan.where({**rec, 'epochs_done': 4, 'machines': [{**a, 'from_epoch': 3}]}) == f"epochs 1-2: not recorded; epochs 3-4: {here}"
    assert run_plan.where({**rec, 'epochs_done': 4, 'machines': [a, {**a, 'from_epoch': 2}, {**b, 'from_epoch': 3}]}) == f"epochs 1-2: {here}; epochs 3-4: B, bf16"


def test_minutes_to():
    "How soon a run first reaches an accuracy, from its record: the CPU run of issue 20 reached 88.51% after its last epoch."
    rec = json.loads((ROOT/'bench'/'results'/'plan'/'fast12-resize16x4-translate2-seed0.json').read_text())
    assert run_plan.minutes_to(rec, 0.8851) == pytest.approx(sum(rec['seconds_per_epoch']) / 60)
    assert run_plan.minutes_to(rec, 0.80) == pytest.approx(sum(rec['seconds_per_epoch'][:8]) / 60)  # 79.04% after 6 epochs, 81.23% after 8
    assert run_plan.minutes_to(rec, 0.95) is None


def test_summary_minutes_to(done, tmp_path):
    "The summary's minutes to 88.51%: the mean over the seeds that reached it, and how many did."
    d, _ = done
    shutil.copytree(d/'results', tmp_path/'results')
    rec = json.loads((d/'results'/'tiny-seed0.json').read_text())
    (tmp_path/'results'/'tiny-seed0.json').write_text(json.dumps({**rec, 'test_acc_per_epoch': [0.5, 0.9], 'seconds_per_epoch': [60, 120]}))
    run_plan.main(['--plan', str(d/'plan.json'), '--results', str(tmp_path/'results'), '--summary', str(tmp_path/'summary.md'), '--summary-only'])
    row = next(l for l in (tmp_path/'summary.md').read_text().splitlines() if l.startswith('| tiny |'))
    assert [c.strip() for c in row.strip('|').split('|')][10] == '3.00 (1 of 2 seeds)'  # seed 1, trained on 64 images, never gets there


def test_skip_finished(done, capsys):
    d, args = done
    stamps = {p: p.stat().st_mtime_ns for p in (d/'runs').rglob('*.pt')}
    run_plan.main(args)
    assert capsys.readouterr().out.count('skipped (finished)') == 3
    assert stamps == {p: p.stat().st_mtime_ns for p in (d/'runs').rglob('*.pt')}  # nothing trained again


def test_resume_stopped(done, capsys):
    "A run stopped after its last checkpoint but before metrics.json resumes: no epoch trained again, a record written."
    d, args = done
    run = d/'runs'/'tiny-seed0'
    history = json.loads((run/'history.json').read_text())
    for f in ('metrics.json', 'curves.png'): (run/f).unlink()
    (d/'results'/'tiny-seed0.json').unlink()
    run_plan.main(args + ['--only', 'tiny-seed0'])
    assert 'tiny-seed0: resumed' in capsys.readouterr().out
    rec = json.loads((d/'results'/'tiny-seed0.json').read_text())
    assert rec['finished'] and rec['seconds_per_epoch'] == history['seconds']  # the epochs' own times kept: not retrained


def test_bad_plan(tmp_path):
    (tmp_path/'plan.json').write_text(json.dumps({'runs': [PLAN['runs'][0], PLAN['runs'][0]]}))
    with pytest.raises(ValueError, match='names a run twice'): run_plan.main(['--plan', str(tmp_path/'plan.json'), '--summary-only'])
    with pytest.raises(SystemExit): run_plan.main(['--plan', str(ROOT/'bench'/'plan.json'), '--only', 'nope', '--summary-only'])


def test_stopped_by_sigterm(tmp_path):
    "SIGTERM (what `timeout` sends in bench/gpu_plan.sh) stops every run of --jobs, and each writes an unfinished record."
    import signal, subprocess, sys, time
    plan = {'runs': [{'setting': 'long', 'recipe': 'fast', 'epochs': 50, 'seeds': [0, 1], 'limit': 64, 'batch_size': 32}]}
    (tmp_path/'plan.json').write_text(json.dumps(plan))
    proc = subprocess.Popen([sys.executable, str(ROOT/'bench'/'run_plan.py'), '--plan', str(tmp_path/'plan.json'), '--data', 'sample',
                             '--runs', str(tmp_path/'runs'), '--results', str(tmp_path/'results'), '--summary', str(tmp_path/'summary.md'),
                             '--device', 'cpu', '--workers', '0', '--jobs', '2'])
    hist = [tmp_path/'runs'/f'long-seed{s}'/'history.json' for s in (0, 1)]
    t0 = time.time()
    while not all(h.is_file() for h in hist) and time.time() - t0 < 300 and proc.poll() is None: time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) != 0
    for s in (0, 1):
        rec = json.loads((tmp_path/'results'/f'long-seed{s}.json').read_text())
        assert not rec['finished'] and 1 <= rec['epochs_done'] < 50 and len(rec['test_acc_per_epoch']) == rec['epochs_done']
