"""The wheel a user installs: built from this checkout, it holds the package and the bundled sample,
and the trained weights (issue 24), and installed into a fresh virtual environment it imports, answers
`eva_cam --help`, explains a picture with the shipped weights (no run folder) and writes a report.

The fresh environment gets eva_cam only from the wheel (`pip install --no-deps`); its dependencies
(torch and the rest) come from the environment running this test, through a path file, so the test
needs no network and no second 5 GB copy of torch."""
import json, subprocess, sys, sysconfig, venv, zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=900, **kw)
    assert r.returncode == 0, f"{args} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def test_wheel_installs_and_runs(tmp_path):
    run(sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', tmp_path/'dist', ROOT)
    wheels = list((tmp_path/'dist').glob('eva_cam-*-py3-none-any.whl'))
    assert len(wheels) == 1, wheels
    names = zipfile.ZipFile(wheels[0]).namelist()
    for f in ('eva_cam/sample/cifar10-sample.tar.gz', 'eva_cam/data.py', 'eva_cam/gradcam.py', 'eva_cam/cli.py',
              'eva_cam/weights/resnet18_cifar10.pt', 'eva_cam/weights/resnet18_cifar10.json'):
        assert f in names, f"{f} is missing from {wheels[0].name}"
    weights = (ROOT/'eva_cam'/'weights'/'resnet18_cifar10.pt').stat().st_size
    assert wheels[0].stat().st_size < weights + 3_000_000, wheels[0].stat().st_size  # the weights and a little code and data

    env = tmp_path/'venv'
    venv.create(env, with_pip=True)
    py, exe = env/'bin'/'python', env/'bin'/'eva_cam'
    run(py, '-m', 'pip', 'install', '-q', '--no-deps', '--no-index', wheels[0])
    site = Path(run(py, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])').strip())
    (site/'_deps_from_test_env.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')

    where = run(py, '-c', 'import eva_cam; print(eva_cam.__file__)', cwd=tmp_path).strip()
    assert where.startswith(str(env)), f"eva_cam was imported from {where}, not from the wheel"
    assert 'report' in run(exe, '--help', cwd=tmp_path)
    run(py, '-c', "from eva_cam.data import load_cifar10; from PIL import Image; Image.fromarray(load_cifar10('sample').x_test[1]).save('picture.png')", cwd=tmp_path)
    out = run(exe, 'cam', '--image', 'picture.png', '--out', 'cam.png', cwd=tmp_path)
    assert 'the trained ResNet18 eva_cam ships' in out and (tmp_path/'cam.png').stat().st_size > 0, out
    out = run(exe, 'report', '--data', 'sample', '--epochs', '1', '--limit', '256', '--batch-size', '64',
              '--out', tmp_path/'report', cwd=tmp_path)
    m = json.loads((tmp_path/'report'/'run'/'metrics.json').read_text())
    assert out.startswith("report: training s8 on sample into"), out  # Session 8's recipe, said before the training
    assert f"acc {m['final_test_acc']:6.2%}" in out, out  # the last epoch line's test accuracy
    assert all(f"report: {stage}" in out for stage in ('finding the mistakes', 'Grad-CAM', 'writing')), out
    assert 'report written to' in out.splitlines()[-1], out
    page = (tmp_path/'report'/'report.html').read_text()
    assert page.count('<img alt=') == 4 and 'Session 8 report' in page
    # an installed copy is no git checkout, and the sample's accuracy is said not to compare with the write-ups'
    assert ', not recorded' in page and 'not of how well it learns' in page
