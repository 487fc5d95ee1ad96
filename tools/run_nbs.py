"""Run notebooks top to bottom and save their outputs in place, for the docs site.

The docs show the outputs saved in the notebooks (Quarto does not re-run them), so after changing a
notebook run: python tools/run_nbs.py nbs/00_data.ipynb [...]   (no argument: every notebook).
Cells flagged `slow` are skipped (their saved outputs, if any, are kept); cells flagged `fulldata`
run only where the full data set is found. Stops at the first error and leaves that notebook as it was.
The report notebook (05) runs only when named: it reads back its 20-epoch run when session8_run/ holds the
checkpoint, trains it (hours on a CPU) when FULL says so, and otherwise makes the quick report on the sample:
python tools/run_nbs.py nbs/05_session8_report.ipynb (IN_TEST=1 forces the quick report)."""
import os, re, sys, time
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell

root = Path(__file__).resolve().parent.parent
paths = [Path(p).resolve() for p in sys.argv[1:]] or [p for p in sorted((root/'nbs').glob('*.ipynb')) if 'report' not in p.name]
os.chdir(root/'nbs')
sys.path.insert(0, str(root))
from eva_cam.data import find_local
skip = {'slow'} if (os.environ.get('EVA_CAM_DATA') or find_local()) else {'slow', 'fulldata'}

def squash_progress(text: str) -> str:
    "Keep only the last state of each progress bar (tqdm redraws itself; a saved page needs the final line)."
    out = []
    for line in text.replace('\r', '\n').split('\n'):
        if not line.strip(): continue
        m = re.match(r'^(.*?)\s*\d+%\|', line)
        bar = m.group(1).rstrip(':') if m else None
        if bar is not None and out and out[-1][0] == bar: out[-1] = (bar, line)
        else: out.append((bar, line))
    return ''.join(l + '\n' for _, l in out)

def flags(cell) -> set:
    return {l[2:].strip().split()[0] for l in cell.source.splitlines() if l.startswith('#|') and l[2:].strip()}

def run(path: Path):
    nb = read_nb(path)
    def no_eval(cell):
        return cell.cell_type != 'code' or 'nbdev_export(' in cell.source or bool(flags(cell) & skip)
    t0 = time.time()
    for c in nb.cells:  # a cell that now prints nothing must not keep the output of an earlier run
        if not no_eval(c): c.outputs = []
    sh = CaptureShell(path)
    sh.run_all(nb, exc_stop=True, preproc=no_eval)
    for c in nb.cells:
        if c.cell_type == 'code' and not no_eval(c):
            c.execution_count = None
            for o in c.get('outputs', []):
                if o.get('output_type') == 'stream' and o.get('name') == 'stderr':
                    o['text'] = squash_progress(''.join(o['text']) if isinstance(o['text'], list) else o['text'])
    write_nb(nb, path)
    print(f"{path.name}: {time.time()-t0:.0f} s")

for p in paths: run(p)
