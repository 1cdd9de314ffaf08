"""Accuracy and speed of `prepare` on synthetic heads with known answers (tf3dstylegan.preprocess.synthetic).

Not a test (minutes per head on 2 cores). Per head: N4, deepbet's mask and the affine registration, as
`prepare` runs them on a scan, against the truth: registration error (mean distance between the true and the
recovered MNI positions of 2000 points inside the brain), Dice of the brain mask, white-matter coefficient of
variation before and after N4. Then `prepare_folder` on --timing_heads of them with --workers, for the time
per subject. Prints JSON.

    PYTHONPATH=. python bench/bench_prepare.py --num_heads 20 --workers 2 [--cache_dir DIR]
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def measure_head(head, stripper):
    from tf3dstylegan.preprocess.bias import n4_correct
    from tf3dstylegan.preprocess.register import register_to_template
    image = nib.as_closest_canonical(head.image)
    truth = nib.as_closest_canonical(nib.Nifti1Image(head.brain.astype(np.uint8), head.image.affine))
    wm = nib.as_closest_canonical(nib.Nifti1Image(head.white_matter.astype(np.uint8), head.image.affine))
    truth, wm = np.asarray(truth.dataobj) > 0, np.asarray(wm.dataobj) > 0
    data = np.asarray(image.dataobj, np.float32)
    times = {}
    start = time.time()
    corrected = n4_correct(data, image.affine)[0]
    times["n4_s"] = time.time() - start
    start = time.time()
    mask = stripper.mask(corrected)
    times["deepbet_s"] = time.time() - start
    start = time.time()
    world_to_mni, _ = register_to_template(corrected * mask, image.affine)
    times["register_s"] = time.time() - start
    cv = [float(v[wm].std() / v[wm].mean()) for v in (data, corrected)]
    from tf3dstylegan.preprocess.synthetic import registration_error
    return {"description": head.description, "registration_error_mm": registration_error(world_to_mni, head),
            "dice": float(2 * (mask & truth).sum() / (mask.sum() + truth.sum())),
            "wm_cv_before": cv[0], "wm_cv_after": cv[1], **{k: round(v, 1) for k, v in times.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_heads", type=int, default=20)
    parser.add_argument("--timing_heads", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--cache_dir", default=None)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    from tf3dstylegan.prepare import deepbet_weight_files, prepare_folder
    from tf3dstylegan.preprocess import synthetic
    from tf3dstylegan.preprocess.skullstrip import DeepbetStripper
    files = deepbet_weight_files(args.cache_dir)
    stripper = DeepbetStripper.from_weights(*(dict(np.load(f)) for f in files))
    heads, per_head = [], []
    for i in range(args.num_heads):
        head = synthetic.make_head(np.random.default_rng([args.seed, i]), synthetic.ORIENTATIONS[i % 4],
                                   synthetic.VOXEL_SIZES[(i // 4) % 4])
        heads.append(head)
        per_head.append(measure_head(head, stripper))
        print(json.dumps({"head": i, **per_head[-1]}), flush=True)
    errors = [r["registration_error_mm"] for r in per_head]
    dice = [r["dice"] for r in per_head]
    report = {"num_heads": len(per_head), "registration_error_mm": {"median": float(np.median(errors)),
                                                                     "max": float(np.max(errors))},
              "dice": {"median": float(np.median(dice)), "min": float(np.min(dice))},
              "wm_cv": {"before_median": float(np.median([r["wm_cv_before"] for r in per_head])),
                        "after_median": float(np.median([r["wm_cv_after"] for r in per_head])),
                        "lowered_in": int(sum(r["wm_cv_after"] < r["wm_cv_before"] for r in per_head))},
              "seconds_median": {k: float(np.median([r[k] for r in per_head]))
                                 for k in ("n4_s", "deepbet_s", "register_s")},
              "load_average_1min": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        for i, head in enumerate(heads[:args.timing_heads]):
            nib.save(head.image, f"{tmp}/head{i:02d}.nii.gz")
        start = time.time()
        summary = prepare_folder(Path(tmp) / "out", tmp, workers=args.workers, weight_files=files)
        wall = time.time() - start
        rows = [json.loads((Path(tmp) / "out" / "qc" / f"head{i:02d}.json").read_text())
                for i in range(args.timing_heads)]
    report["prepare_folder"] = {"heads": args.timing_heads, "workers": args.workers, "cpu_count": os.cpu_count(),
                                "wall_s": round(wall, 1), "seconds_per_subject": round(wall / args.timing_heads, 1),
                                "flagged": summary["flagged"], "similarity": [round(r["similarity"], 3)
                                                                              for r in rows],
                                "registration_error_mm": [round(synthetic.registration_error(
                                    np.array(r["world_to_mni"]), h), 3) for r, h in zip(rows, heads)],
                                "load_average_1min": os.getloadavg()[0]}
    report["per_head"] = per_head
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
