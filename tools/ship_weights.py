"""Put a trained run's weights into the package: eva_cam/weights/resnet18_cifar10.pt and its record, .json.

    python tools/ship_weights.py --record bench/results/plan/fast15-seed2.json --weights fast15-seed2-fp16.pt \\
        --data ../shared/data/cifar10-jpeg.tar.gz

`--weights` is a ResNet18 state dict (bench/gpu_plan.sh brings the best fast15 run's back as fp16). The record
beside the weights copies the run's record (recipe as run, seed, epochs, test accuracy with and without flip TTA,
commit, date, device) and adds what is measured here with the fp16 weights in an fp32 model on this CPU: the
accuracy on the bundled sample's 200 test images (chapter 01's test checks it) and, with --data, on the full
test set; and the file's sha256, which `load_pretrained` checks. The weights are replaced only by a run whose
record is better (--force to override); both files are written through temporary files, never half-written.
"""
from __future__ import annotations
import argparse, datetime, hashlib, json, os, sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from eva_cam.data import get_dataloaders, load_cifar10  # noqa: E402
from eva_cam.resnet import PRETRAINED, ResNet18  # noqa: E402
from eva_cam.train import predict  # noqa: E402


def accuracy(model, data) -> float:
    _, test_dl = get_dataloaders(data, 'none', batch_size=256, num_workers=0)
    logits, labels = predict(model, test_dl, 'cpu', precision='fp32')
    return (logits.argmax(1) == labels).float().mean().item()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--record', type=Path, required=True, help="the run's record, from bench/run_plan.py")
    p.add_argument('--weights', type=Path, required=True, help="the run's model state dict (a .pt file)")
    p.add_argument('--data', default=None, help='the full CIFAR-10, to measure the shipped weights on its test set')
    p.add_argument('--force', action='store_true', help='replace the shipped weights even with a worse record')
    p.add_argument('--code-commit', default=None, help="the commit whose code made the run, where the record's git_commit is not it "
                   "(a lent GPU machine's copy of the tree names the commit its session started from)")
    a = p.parse_args(argv)
    rec = json.loads(a.record.read_text())
    if not rec.get('finished') or rec['recipe_as_run']['model'] != 'resnet18':
        p.error(f"{a.record}: not a finished resnet18 run.")
    dest = ROOT/'eva_cam'/'weights'/f'{PRETRAINED}.pt'
    old = json.loads(dest.with_suffix('.json').read_text()) if dest.with_suffix('.json').is_file() else None
    if old and old['final_test_acc'] >= rec['final_test_acc'] and not a.force:
        p.error(f"The shipped weights' record ({old['final_test_acc']:.4f}, {old['name']}) is not worse than "
                f"{rec['name']}'s ({rec['final_test_acc']:.4f}): nothing replaced (--force to replace them).")
    sd = torch.load(a.weights, map_location='cpu', weights_only=True)
    sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    model = ResNet18(); model.load_state_dict(sd); model.eval()  # refuses a state dict of another network
    keep = ('name', 'setting', 'seed', 'recipe_as_run', 'epochs_done', 'final_test_acc', 'final_test_acc_flip_tta',
            'test_images', 'device_name', 'precision', 'augmentation', 'torch_version', 'data_source', 'git_commit', 'run_finished')
    out = {k: rec.get(k) for k in keep}
    out.update(source_record=str(a.record.resolve().relative_to(ROOT)) if a.record.resolve().is_relative_to(ROOT) else str(a.record),
               dtype='float16', sample_test_acc=accuracy(model, load_cifar10('sample')), sample_test_images=200,
               code_commit=a.code_commit or rec.get('git_commit'), shipped=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'))
    if a.data:
        full = load_cifar10(a.data)
        out.update(full_test_acc_shipped=accuracy(model, full), full_test_images=len(full.x_test))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f'.{dest.name}.{os.getpid()}.tmp'); torch.save(sd, tmp)
    out['sha256'] = hashlib.sha256(tmp.read_bytes()).hexdigest()
    jtmp = dest.with_name(f'.{dest.stem}.json.{os.getpid()}.tmp'); jtmp.write_text(json.dumps(out, indent=1) + '\n')
    os.replace(tmp, dest); os.replace(jtmp, dest.with_suffix('.json'))
    print(json.dumps({k: out[k] for k in ('name', 'final_test_acc', 'sample_test_acc', 'full_test_acc_shipped', 'sha256') if k in out}, indent=1))


if __name__ == '__main__':
    main()
