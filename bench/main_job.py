"""How long the README's main job takes on this machine, timed from outside.

The main job is `eva_cam report --data sample`: train `s8` (20 epochs) on the CIFAR-10 sample bundled in the package, explain
its mistakes with Grad-CAM and write the report. The README quotes this record rather than a number typed by hand.

    python bench/main_job.py      # a few minutes on 2 cores; writes bench/results/main-job-cpu.json

The record names the CPU, whether it computes bf16 in hardware (`eva_cam.core.cpu_has_bf16`) and so which precision
`'auto'` trained in, and the load average before and after: a figure from a busy machine is an upper bound.
"""
from __future__ import annotations
import argparse, datetime, json, os, platform, subprocess, sys, tempfile, time
from pathlib import Path

import torch

from eva_cam.core import cpu_has_bf16, resolve_precision
from eva_cam.core import device_name

CPU = torch.device('cpu')


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default=str(Path(__file__).parent/'results'/'main-job-cpu.json'))
    p.add_argument('--keep', type=Path, help='write the report into this new folder, to look at, instead of a temporary one')
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = a.keep or Path(tmp)/'sample-report'
        cmd = ['eva_cam', 'report', '--data', 'sample', '--out', str(report)]
        exe = Path(sys.executable).parent/'eva_cam'  # the console script of this environment
        load_before, t0 = os.getloadavg(), time.perf_counter()
        subprocess.run([str(exe), *cmd[1:]], check=True, env={**os.environ, 'CUDA_VISIBLE_DEVICES': ''})
        seconds = time.perf_counter() - t0
        written = (report/'report.html').is_file()
    res = dict(what="the README's main job, " + ' '.join(cmd[:4]) + ", on the CPU", seconds=seconds, report_written=written,
               cpu=device_name(CPU), cpu_capability=torch.backends.cpu.get_cpu_capability(), cpu_has_bf16=cpu_has_bf16(),
               precision=resolve_precision('auto', CPU), cores=os.cpu_count(), threads=torch.get_num_threads(),
               torch_version=torch.__version__, python_version=platform.python_version(),
               loadavg_before=load_before, loadavg_after=os.getloadavg(),
               date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"{seconds:.0f} s ({seconds // 60:.0f} min {seconds % 60:.0f} s) in {res['precision']} on {res['cpu']} "
          f"({res['cpu_capability']}); load average before {load_before[0]:.1f}, after {res['loadavg_after'][0]:.1f}; wrote {a.out}")


if __name__ == '__main__':
    main()
