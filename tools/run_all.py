"""Run every notebook the way a student's "Run all" does, and fail on any error cell.

Each notebook is copied into a fresh folder outside the repository and executed top to bottom by nbclient
with a real kernel of the Python that runs this script: `IN_TEST` unset, no `../shared` beside it, pip
unable to download (PIP_NO_INDEX, so a chapter's install cell must cope with being offline), a cache folder
of its own, and `EVA_CAM_DATA` only when it is passed on. Prints each notebook's time and ends with the line
"N passed, N failed".

    python tools/run_all.py                      # every notebook in nbs/
    python tools/run_all.py nbs/04_gradcam.ipynb # some
    EVA_CAM_DATA=path/to/cifar10-jpeg.tar.gz python tools/run_all.py   # the full-data cells too

Run it with the Python of an environment that has only `pip install . ipykernel nbclient`, as CI does.
"""
import argparse, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent


def run_one(path: Path, work: Path, timeout: int, keep: Path|None = None) -> tuple[bool, float, str]:
    "Execute a copy of `path` in `work/<stem>`; (passed, seconds, error text). `keep`: a folder for the executed notebook."
    folder = work/path.stem; folder.mkdir()
    nb = nbformat.read(shutil.copy(path, folder/path.name), as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name='eva_cam_student', resources={'metadata': {'path': str(folder)}})
    t0 = time.monotonic()
    try:
        try: client.execute()
        finally:
            if keep: keep.mkdir(parents=True, exist_ok=True); nbformat.write(nb, keep/path.name)
    except CellExecutionError as e: return False, time.monotonic() - t0, str(e)[-3000:]
    except Exception as e: return False, time.monotonic() - t0, f"{type(e).__name__}: {e}"
    return True, time.monotonic() - t0, ''


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('notebooks', nargs='*', help='notebooks to run (default: every notebook in nbs/)')
    p.add_argument('--timeout', type=int, default=1200, help='seconds one cell may take (default: %(default)s)')
    p.add_argument('--keep', type=Path, help='a folder to save the executed notebooks in, outputs and all, to read afterwards')
    args = p.parse_args()
    paths = [Path(n).resolve() for n in args.notebooks] or sorted((ROOT/'nbs').glob('*.ipynb'))
    with tempfile.TemporaryDirectory(prefix='eva_cam_run_all_') as work:
        work = Path(work)
        # a kernel of this very Python (not whatever kernel named python3 the machine has), known only to this run
        subprocess.check_call([sys.executable, '-m', 'ipykernel', 'install', '--prefix', str(work/'jupyter'),
                               '--name', 'eva_cam_student'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.environ['JUPYTER_PATH'] = str(work/'jupyter'/'share'/'jupyter')
        for k in ('IN_TEST', 'EVA_CAM_CACHE', 'PYTHONPATH'): os.environ.pop(k, None)
        os.environ.update(EVA_CAM_CACHE=str(work/'cache'), PIP_NO_INDEX='1', MPLBACKEND='Agg', TMPDIR=str(work))
        passed, failed = 0, 0
        known = {'jupyter', 'cache', *(q.stem for q in paths)}
        for path in paths:
            ok, secs, err = run_one(path, work, args.timeout, args.keep and args.keep.resolve())
            print(f"{'PASS' if ok else 'FAIL'} {path.name} ({secs:.0f} s)", flush=True)
            if ok: passed += 1
            else: failed += 1; print(err, flush=True)
            leftovers = [p.name for p in work.iterdir()  # torch's compile cache is torch's, not a temporary folder of ours
                         if p.name not in known and not p.name.startswith('torchinductor_')]
            known.update(leftovers)
            if leftovers: failed += 1; print(f"FAIL {path.name} left temporary files behind: {leftovers}", flush=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == '__main__': main()
