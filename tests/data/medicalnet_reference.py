"""Write MedicalNet ResNet reference files with PyTorch (not a test; needs torch, which the project never uses).

The reference network is the `medmetric==0.1.1` wheel's `models/resnet.py` (MIT), an independent copy of
MedicalNet's `models/resnet.py`: its `Bottleneck` and `_make_layer` (stride, dilation, type-B shortcuts).
Run it in a scratch environment:

    python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy
    pip download --no-deps medmetric==0.1.1 -d /tmp/mm && unzip -q /tmp/mm/*.whl -d /tmp/mm
    PYTHONPATH=/tmp/mm /tmp/torchvenv/bin/python tests/data/medicalnet_reference.py --out tests/data
    PYTHONPATH=/tmp/mm /tmp/torchvenv/bin/python tests/data/medicalnet_reference.py --full --out /tmp/mn

Default: the tiny network (width 4 instead of 64, all 3-4-6-3 blocks) saved as `medicalnet_tiny.pth`
({'state_dict': ...} with DataParallel's 'module.' prefixes and a stray `conv_seg` head, as MedicalNet's
files), its outputs on random inputs in `medicalnet_tiny_outputs.npz`, and `medicalnet_formats_{zip,legacy}.pth`
(the same small dict in both torch.save layouts). `--full`: ResNet-50 at full width, `resnet_50_random.pth`
and `resnet_50_random_outputs.npz` on 40x48x56 and 80x96x112 inputs (tests/test_metrics_medicalnet.py
compares them when MEDICALNET_CHECK_DIR points at that folder).
"""
import argparse
import collections
import os

import numpy as np
import torch
from medmetric.models import resnet as reference


class NarrowResNet(reference.MedicalNetResNet):
    """MedicalNet's backbone with stage widths width * (1, 2, 4, 8) (64 in the published network)."""

    def __init__(self, width, layers=(3, 4, 6, 3)):
        torch.nn.Module.__init__(self)
        self.inplanes, self.no_cuda = width, True
        self.conv1 = torch.nn.Conv3d(1, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = torch.nn.BatchNorm3d(width)
        self.relu = torch.nn.ReLU(inplace=True)
        self.maxpool = torch.nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        block = reference.Bottleneck
        self.layer1 = self._make_layer(block, width, layers[0], "B")
        self.layer2 = self._make_layer(block, 2 * width, layers[1], "B", stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], "B", stride=1, dilation=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], "B", stride=1, dilation=4)


def randomise(model, generator):
    """Random conv weights (He scale) and random batch-norm affine parameters and running statistics."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv3d):
            fan_in = module.weight[0].numel()
            module.weight.data = torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
        elif isinstance(module, torch.nn.BatchNorm3d):
            n = module.num_features
            module.weight.data = 0.5 + torch.rand(n, generator=generator)
            module.bias.data = 0.1 * torch.randn(n, generator=generator)
            module.running_mean.data = 0.1 * torch.randn(n, generator=generator)
            module.running_var.data = 0.5 + torch.rand(n, generator=generator)
    return model.eval()


def features(model, volumes):
    """[N, D, H, W, 1] channels-last inputs -> global mean of layer4 [N, C] (float64)."""
    with torch.no_grad():
        fmap = model(torch.from_numpy(volumes).permute(0, 4, 1, 2, 3).contiguous())
    return fmap.mean(dim=(2, 3, 4)).double().numpy()


def save_checkpoint(model, path):
    state = collections.OrderedDict((f"module.{k}", v) for k, v in model.state_dict().items())
    state["module.conv_seg.0.weight"] = torch.zeros(2, 8, 1, 1, 1)
    torch.save({"state_dict": state}, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    if args.full:
        model = randomise(reference.resnet50(shortcut_type="B", no_cuda=True), generator)
        save_checkpoint(model, os.path.join(args.out, "resnet_50_random.pth"))
        inputs = {f"inputs_{s}": np.tanh(rng.normal(size=(2,) + shape + (1,))).astype(np.float32)
                  for s, shape in (("small", (56, 48, 40)), ("2mm", (112, 96, 80)))}
        outputs = {k.replace("inputs", "features"): features(model, v) for k, v in inputs.items()}
        np.savez(os.path.join(args.out, "resnet_50_random_outputs.npz"), **inputs, **outputs)
        return
    model = randomise(NarrowResNet(4), generator)
    save_checkpoint(model, os.path.join(args.out, "medicalnet_tiny.pth"))
    inputs = np.tanh(rng.normal(size=(2, 16, 20, 24, 1))).astype(np.float32)
    np.savez(os.path.join(args.out, "medicalnet_tiny_outputs.npz"), inputs=inputs, features=features(model, inputs))
    small = collections.OrderedDict(
        weight=torch.arange(24, dtype=torch.float32).reshape(2, 3, 4),
        transposed=torch.arange(6, dtype=torch.float64).reshape(2, 3).t(),
        counts=torch.tensor([1, 2, 3], dtype=torch.int64), half=torch.tensor([0.5, -2.0], dtype=torch.float16))
    torch.save({"state_dict": small, "epoch": 7}, os.path.join(args.out, "medicalnet_formats_zip.pth"))
    torch.save({"state_dict": small, "epoch": 7}, os.path.join(args.out, "medicalnet_formats_legacy.pth"),
               _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    main()
