"""SimpleITK (what `prepare` uses) against ANTsPy on the same synthetic brains: affine registration to the MNI152
template's brain, error = mean distance between the true and recovered MNI positions of points in the brain.

Not a test. The heads' brains are cut with their true masks, so only the registration is compared. Run each
library in an environment that has it (ANTsPy pins numpy < 2.4 and scipy < 1.16: a scratch venv):

    PYTHONPATH=. python bench/compare_registration.py --library simpleitk --num_heads 8
    PYTHONPATH=. /work/venv-torch/bin/python bench/compare_registration.py --library ants --num_heads 8

Prints JSON (per head and median/max error, median seconds).
"""
import argparse
import json
import time

import numpy as np

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ants_register(data, affine):
    """ANTsPy's `registration(type_of_transform='Affine')` (centres-of-mass start, its default schedule)."""
    import ants
    from tf3dstylegan.preprocess.template import load_template

    def to_ants(volume, ras_affine):
        lps = LPS @ ras_affine
        spacing = np.linalg.norm(lps[:3, :3], axis=0)
        return ants.from_numpy(np.asarray(volume, np.float32), origin=lps[:3, 3].tolist(), spacing=spacing.tolist(),
                               direction=lps[:3, :3] / spacing)
    t1, brain, template_affine = load_template()
    fixed = to_ants(t1[::2, ::2, ::2] * brain[::2, ::2, ::2], template_affine @ np.diag([2.0, 2.0, 2.0, 1.0]))
    result = ants.registration(fixed, to_ants(data, affine), type_of_transform="Affine")
    transform = ants.read_transform(result["fwdtransforms"][0])
    params, centre = np.asarray(transform.parameters), np.asarray(transform.fixed_parameters)
    matrix = np.eye(4)
    matrix[:3, :3] = params[:9].reshape(3, 3)
    matrix[:3, 3] = params[9:] + centre - matrix[:3, :3] @ centre  # fixed (MNI) LPS -> moving LPS
    return np.linalg.inv(LPS @ matrix @ LPS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", choices=["simpleitk", "ants"], required=True)
    parser.add_argument("--num_heads", type=int, default=8)
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args()
    from tf3dstylegan.preprocess import synthetic
    if args.library == "simpleitk":
        from tf3dstylegan.preprocess.register import register_to_template

        def register(data, affine):
            return register_to_template(data, affine)[0]
    else:
        register = ants_register
    rows = []
    for i in range(args.num_heads):
        head = synthetic.make_head(np.random.default_rng([args.seed, i]), synthetic.ORIENTATIONS[i % 4],
                                   synthetic.VOXEL_SIZES[(i // 4) % 4])
        data = np.asarray(head.image.dataobj, np.float32) * head.brain
        start = time.time()
        world_to_mni = register(data, head.image.affine)
        rows.append({"head": i, "description": head.description, "seconds": round(time.time() - start, 1),
                     "error_mm": round(synthetic.registration_error(world_to_mni, head), 3)})
        print(json.dumps(rows[-1]), flush=True)
    errors = [r["error_mm"] for r in rows]
    print(json.dumps({"library": args.library, "num_heads": len(rows), "error_mm_median": float(np.median(errors)),
                      "error_mm_max": float(np.max(errors)),
                      "seconds_median": float(np.median([r["seconds"] for r in rows]))}))


if __name__ == "__main__":
    main()
