"""Test-time augmentation on the full CIFAR-10 test set: no views, the flip, airbench's flip-and-translate.

    python bench/tta.py --data ../shared/data/cifar10-jpeg.tar.gz     # writes bench/results/tta-cpu.json

The model is the trained ResNet18 eva_cam ships (`load_pretrained`, fast15-seed2 of the evidence plan), or
`--run` a run folder's (`eva_cam.run.run_model`). Logits averaged over each set of views, over the 10,000
test images in fp32 on the CPU: 'none' (1 forward pass per image), 'flip' (2; what `predict(tta=True)` of
chapter 02 computes) and 'translate' (6; airbench's TTA level 2, which lives here only: 0.10 points over the
flip on one model did not earn it a place in the package, bench/README.md). Accuracies only: the seconds are
those of whatever else ran on the machine.
"""
import argparse, json, os, platform, time
from pathlib import Path

import torch
import torch.nn.functional as F

from eva_cam.data import get_dataloaders, load_cifar10
from eva_cam.resnet import load_pretrained, pretrained_record
from eva_cam.run import run_model

ROOT = Path(__file__).resolve().parent.parent
VIEWS = ('none', 'flip', 'translate')  # the image; and its mirror; and both moved a pixel each way (airbench)


def view_logits(model, x: torch.Tensor, views: str) -> torch.Tensor:
    "float32 logits of `x` averaged over the views named (one of VIEWS)."
    if views == 'none': return model(x).float()
    mirror = lambda v: (model(v).float() + model(v.flip(3)).float()) / 2
    if views == 'flip': return mirror(x)
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode='reflect')  # moved one pixel up-left and one down-right
    return (mirror(x) + (mirror(padded[..., :h, :w]) + mirror(padded[..., 2:, 2:])) / 2) / 2


@torch.inference_mode()
def accuracy(model, dl, views: str) -> float:
    "Test accuracy of `model` (eval mode, fp32, CPU) over `dl` with the views named."
    right = n = 0
    for xb, yb in dl:
        right += (view_logits(model, xb, views).argmax(1) == yb).sum().item(); n += len(yb)
    return right / n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', default='auto', help="CIFAR-10 source (see load_cifar10); default: 'auto'")
    p.add_argument('--run', type=Path, default=None, help="a run folder; default: the shipped weights")
    p.add_argument('--limit', type=int, default=None, help='only the first N test images (a quick look)')
    p.add_argument('--out', type=Path, default=ROOT/'bench'/'results'/'tta-cpu.json')
    a = p.parse_args(argv)
    if a.run is None: model, name = load_pretrained(), pretrained_record()['name']
    else: model, name = run_model(a.run)[0], str(a.run)
    model.eval()
    data = load_cifar10(a.data)
    _, test_dl = get_dataloaders(data, 'none', batch_size=500, num_workers=0, limit=a.limit)
    results = {}
    for views in VIEWS:
        t0 = time.perf_counter()
        results[views] = {'test_acc': accuracy(model, test_dl, views), 'seconds': time.perf_counter() - t0}
        print(views, results[views], flush=True)
    rec = {'what': 'test accuracy of one model with each set of test-time views, full test set, fp32, CPU',
           'model': name, 'data': data.source, 'test_images': len(test_dl.dataset), 'results': results,
           'torch': torch.__version__, 'machine': platform.processor() or platform.machine(),
           'cpus': os.cpu_count()}
    a.out.parent.mkdir(parents=True, exist_ok=True); a.out.write_text(json.dumps(rec, indent=1) + '\n')
    print(f"written to {a.out}")


if __name__ == '__main__':
    main()
