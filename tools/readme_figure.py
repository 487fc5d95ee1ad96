"""Draw the README's picture: the trained ResNet18 eva_cam ships, explaining the first six test images of the bundled sample
with Grad-CAM (layer4, the predicted class). Writes nbs/images/gradcam.png.    python tools/readme_figure.py"""
from pathlib import Path
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
import torch
from eva_cam.data import CLASSES, denormalize, get_transforms, load_cifar10
from eva_cam.gradcam import gradcam, overlay
from eva_cam.resnet import load_pretrained

model, sample, tfm = load_pretrained(), load_cifar10('sample'), get_transforms('none')[1]
idx = list(range(6))
x = torch.stack([tfm(image=sample.x_test[i])['image'] for i in idx])
with torch.no_grad(): probs = model(x).softmax(1)
cams = gradcam(model, x, 'layer4')
fig, axs = plt.subplots(2, len(idx), figsize=(1.6 * len(idx), 3.5))
for j in range(len(idx)):
    rgb = denormalize(x[j]).permute(1, 2, 0).numpy()
    p, c = probs[j].max(0)
    axs[0, j].imshow(rgb); axs[0, j].set_title(f"{CLASSES[int(c)]} {p:.0%}", fontsize=9)
    axs[1, j].imshow(overlay(rgb, cams[j].numpy(), 0.5))
    for ax in axs[:, j]: ax.axis('off')
fig.suptitle('Grad-CAM of the shipped ResNet18 (layer4, predicted class) on CIFAR-10 test images', fontsize=9)
fig.tight_layout()
out = Path(__file__).resolve().parent.parent/'nbs'/'images'/'gradcam.png'
fig.savefig(out, dpi=110, bbox_inches='tight')
print(out, [CLASSES[i] for i in sample.y_test[idx]])
