"""Several CAM methods and layers from one call of `gradcam` against one call per method and layer, same run.

    python bench/cam_shared.py            # writes bench/results/cam-shared-cpu.json

The trained ResNet18 eva_cam ships, 64 test images of the bundled sample, their true classes; the five
gradient-based methods (Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM) at the four stages. One call with
lists shares one forward and one backward pass among all twenty maps; twenty calls run twenty of each. Each way is
timed `--repeats` times after one warm-up (median kept), both in this one run, and the maps are compared.
"""
import argparse, json, os, platform
from pathlib import Path

import torch

from cam_speed import test_batch, timed  # the same images and timing as bench/cam_speed.py
from eva_cam.gradcam import gradcam

ROOT = Path(__file__).resolve().parent.parent
METHODS = ['gradcam', 'gradcam++', 'xgradcam', 'hirescam', 'layercam']
LAYERS = ['layer1', 'layer2', 'layer3', 'layer4']


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeats', type=int, default=5, help='timed calls after the warm-up; the median is kept (default: %(default)s)')
    p.add_argument('--out', type=Path, default=ROOT/'bench'/'results'/'cam-shared-cpu.json')
    a = p.parse_args(argv)
    model, x, y = test_batch(64)
    t_one, one = timed(lambda: gradcam(model, x, LAYERS, y, method=METHODS), a.repeats)
    t_many, many = timed(lambda: {m: {l: gradcam(model, x, l, y, method=m) for l in LAYERS} for m in METHODS}, a.repeats)
    diff = max((one[m][l] - many[m][l]).abs().max().item() for m in METHODS for l in LAYERS)
    rec = {'what': 'median seconds to get 5 methods x 4 layers of maps for 64 images (trained ResNet18, true classes), after one warm-up',
           'one_call_s': t_one, 'one_call_per_map_s': t_many, 'ratio': t_many / t_one, 'max_abs_difference': diff,
           'methods': METHODS, 'layers': LAYERS, 'repeats': a.repeats, 'torch': torch.__version__, 'threads': torch.get_num_threads(),
           'machine': platform.processor() or platform.machine(), 'cpus': os.cpu_count(), 'load_before': os.getloadavg()[0]}
    print(json.dumps(rec, indent=1))
    a.out.parent.mkdir(parents=True, exist_ok=True); a.out.write_text(json.dumps(rec, indent=1) + '\n')
    print(f"written to {a.out}")


if __name__ == '__main__':
    main()
