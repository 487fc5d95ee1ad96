"""Test-time augmentation on the full CIFAR-10 test set: no views, the flip, and airbench's flip-and-translate.

    python bench/tta.py --data ../shared/data/cifar10-jpeg.tar.gz     # writes bench/results/tta-cpu.json

The model is the trained ResNet18 eva_cam ships (`load_pretrained`, fast15-seed2 of the evidence plan), or
`--checkpoint` a run's checkpoint. `predict(tta=...)` (chapter 02) over the 10,000 test images, in fp32 on the CPU:
'none' (1 forward pass per image), 'flip' (2) and 'translate' (6; airbench's TTA level 2). Accuracies only: the
seconds are those of whatever else ran on the machine.
"""
import argparse, json, os, platform, time
from pathlib import Path

import torch

from eva_cam.data import get_dataloaders, load_cifar10
from eva_cam.resnet import load_pretrained, pretrained_record
from eva_cam.train import TTA, checkpoint_model, predict

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', default='auto', help="CIFAR-10 source (see load_cifar10); default: 'auto'")
    p.add_argument('--checkpoint', type=Path, default=None, help="a run's checkpoint.pt or best.pt; default: the shipped weights")
    p.add_argument('--out', type=Path, default=ROOT/'bench'/'results'/'tta-cpu.json')
    a = p.parse_args(argv)
    model, name = (load_pretrained(), pretrained_record()['name']) if a.checkpoint is None else (checkpoint_model(a.checkpoint)[0], str(a.checkpoint))
    data = load_cifar10(a.data)
    _, test_dl = get_dataloaders(data, 'none', batch_size=500, num_workers=0)
    results = {}
    for tta in TTA:
        t0 = time.perf_counter()
        logits, labels = predict(model, test_dl, 'cpu', 'fp32', tta=tta)
        results[tta] = {'test_acc': (logits.argmax(1) == labels).float().mean().item(), 'seconds': time.perf_counter() - t0}
        print(tta, results[tta], flush=True)
    rec = {'what': 'test accuracy of one model with each test-time augmentation of predict, full test set, fp32 on the CPU',
           'model': name, 'data': data.source, 'test_images': len(labels), 'results': results, 'torch': torch.__version__,
           'machine': platform.processor() or platform.machine(), 'cpus': os.cpu_count()}
    a.out.parent.mkdir(parents=True, exist_ok=True); a.out.write_text(json.dumps(rec, indent=1) + '\n')
    print(f"written to {a.out}")


if __name__ == '__main__':
    main()
