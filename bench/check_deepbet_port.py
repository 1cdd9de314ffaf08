"""Check the Keras LinkNet3d (tf3dstylegan.preprocess.linknet) against deepbet's TorchScript modules, both of them,
on the inputs skull stripping gives them: a synthetic head's 128^3 volume (bounding-box network) and its 256^3
brain box (brain network), normalised as deepbet does.

Not a test: it needs torch, which the project never depends on. The torch half runs in a subprocess of
--torch_python (a scratch venv: `python3 -m venv /work/venv-torch && /work/venv-torch/bin/pip install torch numpy`):

    PYTHONPATH=. python bench/check_deepbet_port.py --torch_python /work/venv-torch/bin/python [--cache_dir DIR]

Prints JSON: per network, max |keras - torch| of the brain probability, the voxels whose mask (> 0.5) differs,
and max |keras - torch| / max |torch| of the `down3` features map; the target is 1e-4.
"""
import argparse
import json
import subprocess
import sys
import tempfile

import numpy as np

TORCH_SIDE = r'''
import io, json, sys, zipfile
import numpy as np, torch
args = json.loads(sys.argv[1])
torch.set_grad_enabled(False)
out = {}
with zipfile.ZipFile(args["wheel"]) as z, np.load(args["inputs"]) as data:
    for key, member in (("bbox", "data/models/bbox_model.pt"), ("brain", "data/models/model.pt")):
        net = torch.jit.load(io.BytesIO(z.read(member)), map_location="cpu").eval()
        x = torch.from_numpy(data[key])[None, None]
        out[key + "_probability"] = net(x)[0, 1].numpy()
        relu, h = getattr(net.conv, "2"), net.init(getattr(net.conv, "2"), x)
        for down in (net.down0, net.down1, net.down2, net.down3):
            h = down(relu, h)
        out[key + "_down3"] = h[0].permute(1, 2, 3, 0).numpy()
np.savez(args["outputs"], **out)
'''


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--torch_python", required=True)
    parser.add_argument("--cache_dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import keras
    import nibabel as nib
    from tf3dstylegan.metrics import weights
    from tf3dstylegan.preprocess import linknet, skullstrip, synthetic
    head = synthetic.make_head(np.random.default_rng(args.seed), "oblique", (1.0, 1.0, 1.2))
    volume = np.asarray(nib.as_closest_canonical(head.image).dataobj, np.float32)
    tensors = {key: weights.read_network_weights(which, weights.ensure_weights(which, args.cache_dir))
               for key, which in (("bbox", "deepbet_bbox"), ("brain", "deepbet"))}
    models = {key: linknet.build_linknet(t) for key, t in tensors.items()}
    small = skullstrip.resize_nearest_exact(volume, skullstrip.SMALL_SHAPE)
    low, high = np.quantile(small, skullstrip.QUANTILES)
    inputs = {"bbox": skullstrip.normalize(small, low, high)}
    stripper = skullstrip.DeepbetStripper(models["bbox"], models["brain"])
    _, box = stripper.probability(volume)
    inputs["brain"] = skullstrip.normalize(skullstrip.resize_nearest_exact(volume[box], skullstrip.SHAPE), low, high)
    wheel = weights.cache_dir(args.cache_dir) / "wheels" / weights.SOURCES["deepbet"]["wheel"]
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(f"{tmp}/in.npz", **inputs)
        spec = {"inputs": f"{tmp}/in.npz", "outputs": f"{tmp}/out.npz", "wheel": str(wheel)}
        subprocess.run([args.torch_python, "-c", TORCH_SIDE, json.dumps(spec)], check=True)
        with np.load(f"{tmp}/out.npz") as f:
            reference = dict(f)
    report = {"head": head.description}
    for key, model in models.items():
        with_maps = keras.Model(model.inputs, [model.output, model.get_layer(linknet.ENCODER_MAPS[-1]).output])
        probability, down3 = (np.asarray(v)[0] for v in with_maps.predict_on_batch(inputs[key][None, ..., None]))
        probability = probability[..., 1]
        torch_probability, torch_down3 = reference[key + "_probability"], reference[key + "_down3"]
        report[key] = {"input_shape": list(inputs[key].shape),
                       "max_abs_probability_diff": float(np.abs(probability - torch_probability).max()),
                       "mask_voxels_differing": int(((probability > 0.5) != (torch_probability > 0.5)).sum()),
                       "mask_voxels": int((torch_probability > 0.5).sum()),
                       "down3_max_rel_diff": float(np.abs(down3 - torch_down3).max() / np.abs(torch_down3).max())}
    worst = max(max(r["max_abs_probability_diff"], r["down3_max_rel_diff"]) for k, r in report.items() if k != "head")
    report["worst"], report["ok"] = worst, worst < 1e-4
    print(json.dumps(report, indent=1))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
