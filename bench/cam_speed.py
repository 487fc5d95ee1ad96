"""eva_cam's Grad-CAM++ and Score-CAM against pytorch-grad-cam's, same model, layer, images and run.

    python bench/cam_speed.py            # writes bench/results/cam-speed-cpu.json

The trained ResNet18 eva_cam ships, a batch of 64 test images of the bundled sample, their true classes,
layer3 (256 channels, 8x8). Each call is timed `--repeats` times (default 1: a Score-CAM call is 16,384 forward passes) after one warm-up, and the median kept;
the ratio is pytorch-grad-cam's time over eva_cam's, both measured in this one run. The maps are compared
too (max |difference|), so the two are known to compute the same thing.
"""
import argparse, contextlib, io, json, os, platform, statistics, time
from pathlib import Path

import torch

from eva_cam.data import get_transforms, load_cifar10
from eva_cam.gradcam import gradcam
from eva_cam.resnet import load_pretrained

ROOT = Path(__file__).resolve().parent.parent


def timed(f, repeats: int):
    f()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter(); out = f(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


def test_batch(n: int = 64):
    "The trained ResNet18 eva_cam ships, the first `n` test images of the bundled sample (normalised) and their classes."
    model, sample = load_pretrained(), load_cifar10('sample')
    tfm = get_transforms('none')[1]
    return model, torch.stack([tfm(image=im)['image'] for im in sample.x_test[:n]]), torch.as_tensor(sample.y_test[:n])


def main(argv=None):
    from pytorch_grad_cam import GradCAMPlusPlus, ScoreCAM  # only this script compares with pytorch-grad-cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeats', type=int, default=1, help='timed calls after the warm-up; the median is kept (default: %(default)s)')
    p.add_argument('--out', type=Path, default=ROOT/'bench'/'results'/'cam-speed-cpu.json')
    a = p.parse_args(argv)
    model, x, y = test_batch(64)
    results = {}
    for method, cls in (('gradcam++', GradCAMPlusPlus), ('scorecam', ScoreCAM)):
        def ref():
            with cls(model=model, target_layers=[model.layer3]) as cam, contextlib.redirect_stderr(io.StringIO()):
                if method == 'scorecam': cam.batch_size = 64
                return torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in y]))
        t_ours, ours = timed(lambda: gradcam(model, x, 'layer3', y, method=method), a.repeats)
        t_ref, theirs = timed(ref, a.repeats)
        results[method] = {'eva_cam_s': t_ours, 'pytorch_grad_cam_s': t_ref, 'ratio': t_ref / t_ours,
                           'max_abs_difference': (ours - theirs).abs().max().item()}
        print(method, results[method], flush=True)
    rec = {'what': 'median seconds of one call on a batch of 64 (layer3, true classes, trained ResNet18), after one warm-up',
           'repeats': a.repeats, 'results': results, 'torch': torch.__version__, 'threads': torch.get_num_threads(),
           'machine': platform.processor() or platform.machine(), 'cpus': os.cpu_count(), 'load_before': os.getloadavg()[0]}
    a.out.parent.mkdir(parents=True, exist_ok=True); a.out.write_text(json.dumps(rec, indent=1) + '\n')
    print(f"written to {a.out}")


if __name__ == '__main__':
    main()
