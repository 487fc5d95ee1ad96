"""Train `fast` and `s10` for 2 epochs on the bundled sample with seed 0 and write their histories: the check that a
change to the training code leaves what a run computes as it was. Run before and after, and compare the two files:
    python bench/same_history.py OUT.json"""
import json, sys, tempfile
from pathlib import Path
from eva_cam.run import train_run

out = {}
for recipe in ('fast', 's10'):
    with tempfile.TemporaryDirectory() as d:
        h = train_run(recipe, data='sample', out=Path(d)/'run', epochs=2, device='cpu')
    out[recipe] = {k: getattr(h, k) for k in ('train_loss', 'train_acc', 'test_loss', 'test_acc', 'lr')}
Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
print(json.dumps(out, indent=1))
