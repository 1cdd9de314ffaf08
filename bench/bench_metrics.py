"""Time the metrics: the fixed slow parts (before/after) and the cost of 1000 generated 2 mm volumes.

    python bench/bench_metrics.py [--volumes 2] [--medicalnet_weights resnet_50_23dataset.pth] [--skip_scipy]

Prints JSON. `before_after`: the Fréchet distance of 64 and 1000 x 2048 features with scipy.linalg.sqrtm
(the reference formula) and with `frechet.fid_from_features`; a 3D MS-SSIM pair at 80x96x112 with scipy's
float64 Gaussian filter (5 blurred maps per scale, one pair at a time, the previous implementation) and
with `msssim.pairwise_ms_ssim` (batched). `per_volume_s`: generator (2mm-fd16, batch 8), Inception on
the three middle slices, deepbet, MedicalNet ResNet-50 (random weights unless given: same cost), MS-SSIM
per pair, memorisation pooling. `set_level_s`: FID, KID, precision/recall and memorisation NCC for 1000
volumes, and their 50-halves ranges. `projected_1000_s`: per protocol, 1000 generated volumes plus 2000
real ones (halves A and B) = per-volume costs x counts + set-level costs.
"""
import argparse
import json
import time

import numpy as np
import scipy.linalg
import scipy.ndimage

SHAPE = (80, 96, 112)


def timed(fn, repeat=1):
    """Mean seconds of `repeat` calls after one warm-up call (repeat 0: the one call, no warm-up)."""
    if repeat == 0:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def scipy_fid(a, b):
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def scipy_ms_ssim_pair(a, b):
    """The previous implementation: float64 scipy filter, five blurred maps per scale."""
    from tf3dstylegan.metrics import msssim
    value = 1.0
    for scale, weight in enumerate(msssim.WEIGHTS):
        blur = lambda v: scipy.ndimage.gaussian_filter(v, 1.5, truncate=4.0, mode="reflect")  # noqa: E731
        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
        cs_map = (2 * cov + msssim.C2) / (var_a + var_b + msssim.C2)
        ssim_map = (2 * mu_a * mu_b + msssim.C1) / (mu_a ** 2 + mu_b ** 2 + msssim.C1) * cs_map
        value *= max(ssim_map.mean() if scale == 4 else cs_map.mean(), 0.0) ** weight
        a, b = msssim._avg_pool2(a[None])[0], msssim._avg_pool2(b[None])[0]
    return value


def random_medicalnet_weights(rng, width=64, depths=(3, 4, 6, 3)):
    """Full-size MedicalNet ResNet-50 weights with random values (torch names and layouts)."""
    weights = {}

    def conv_bn(conv, bn, c_in, c_out, k):
        weights[f"{conv}.weight"] = (rng.normal(size=(c_out, c_in, k, k, k)) * np.sqrt(2 / (c_in * k ** 3)))
        weights.update({f"{bn}.weight": np.ones(c_out), f"{bn}.bias": np.zeros(c_out),
                        f"{bn}.running_mean": np.zeros(c_out), f"{bn}.running_var": np.ones(c_out)})
    conv_bn("conv1", "bn1", 1, width, 7)
    c_in = width
    for stage, depth in enumerate(depths):
        planes = width * 2 ** stage
        for block in range(depth):
            name = f"layer{stage + 1}.{block}"
            conv_bn(f"{name}.conv1", f"{name}.bn1", c_in, planes, 1)
            conv_bn(f"{name}.conv2", f"{name}.bn2", planes, planes, 3)
            conv_bn(f"{name}.conv3", f"{name}.bn3", planes, 4 * planes, 1)
            if block == 0:
                conv_bn(f"{name}.downsample.0", f"{name}.downsample.1", c_in, 4 * planes, 1)
            c_in = 4 * planes
    return {k: v.astype(np.float32) for k, v in weights.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volumes", type=int, default=2, help="volumes per timed feature-network call")
    parser.add_argument("--medicalnet_weights", default=None)
    parser.add_argument("--skip_scipy", action="store_true", help="skip the ~1 min scipy sqrtm timings")
    args = parser.parse_args()

    import tf3dstylegan
    from tf3dstylegan.metrics import (deepbet, frechet, inception, intervals, kid, medicalnet, memorisation,
                                      msssim, precision_recall, slices, weights)
    rng = np.random.default_rng(0)
    out = {"before_after": {}, "per_volume_s": {}, "set_level_s": {}}
    ba = out["before_after"]
    for n in (64, 1000):
        a, b = rng.normal(size=(n, 2048)), rng.normal(size=(n, 2048)) + 0.1
        if not args.skip_scipy:
            ba[f"fid_{n}x2048_scipy_sqrtm_s"] = timed(lambda: scipy_fid(a, b), repeat=0)
        ba[f"fid_{n}x2048_ours_s"] = timed(lambda: frechet.fid_from_features(a, b), repeat=3)
    fields = scipy.ndimage.gaussian_filter(rng.random((8,) + SHAPE), (0, 2, 2, 2))
    fields = (fields - fields.min()) / (fields.max() - fields.min())
    ba["msssim_pair_80x96x112_scipy_float64_s"] = timed(lambda: scipy_ms_ssim_pair(fields[0], fields[1]), 2)
    ba["msssim_pair_80x96x112_ours_s"] = timed(lambda: msssim.pairwise_ms_ssim(fields[..., None]), 1) / 4

    per = out["per_volume_s"]
    G, _ = tf3dstylegan.build_networks("2mm-fd16")
    z = rng.normal(size=(8, G.latent_size)).astype(np.float32)
    per["generator_2mm_fd16"] = timed(lambda: G(z, noise_mode="const").numpy(), 2) / 8
    volumes = np.tanh(rng.normal(size=(args.volumes,) + SHAPE + (1,))).astype(np.float32)
    cached = lambda which: weights.read_network_weights(which, weights.ensure_weights(which))  # noqa: E731
    nets = {"inception_3_slices": lambda: inception.InceptionFeatures(cached("inception")),
            "deepbet": lambda: deepbet.DeepbetFeatures(cached("deepbet")),
            "medicalnet": lambda: medicalnet.MedicalNetFeatures(
                args.medicalnet_weights or random_medicalnet_weights(rng), batch_size=args.volumes)}
    for name, build in nets.items():
        net = build()
        if name.startswith("inception"):
            call = lambda: [net(inception.to_uint8_range(s)) for s in slices.middle_slices(volumes).values()]  # noqa
        else:
            call = lambda: net(volumes)  # noqa: E731
        per[name] = timed(call, 1) / args.volumes
    per["msssim_pair"] = ba["msssim_pair_80x96x112_ours_s"]
    per["memorisation_pooling"] = timed(lambda: memorisation.pool_volumes(volumes, 2), 3) / args.volumes

    sets = out["set_level_s"]
    a, b = np.abs(rng.normal(size=(1000, 2048))), np.abs(rng.normal(size=(1000, 2048)))
    precision = lambda x, y: precision_recall.precision_recall(x, y)[0]  # noqa: E731  (recall costs the same)
    for name, statistic in (("fid", frechet.fid_from_features), ("kid", kid.kid_from_features),
                            ("precision_recall", precision)):
        sets[f"{name}_1000x2048"] = timed(lambda: statistic(a, b), 1)
        sets[f"{name}_1000x2048_50_halves"] = timed(lambda: intervals.spread_over_halves(statistic, [a, b], 50), 0)
    pooled = rng.normal(size=(1000, 40, 48, 56)).astype(np.float32)
    sets["memorisation_1000_vs_1000"] = timed(lambda: memorisation.check(pooled, pooled[::-1].copy()), 1)

    real_and_fake = 3000  # generated + real halves A and B
    fid_set = sets["fid_1000x2048"] + sets["fid_1000x2048_50_halves"]
    kid_set = sets["kid_1000x2048"] + sets["kid_1000x2048_50_halves"]
    pr_set = 2 * (sets["precision_recall_1000x2048"] + sets["precision_recall_1000x2048_50_halves"])
    generate = 1000 * per["generator_2mm_fd16"]
    paper = (generate + real_and_fake * per["inception_3_slices"] + 1000 * per["msssim_pair"] + 2 * 3 * fid_set)
    medical = generate + real_and_fake * per["medicalnet"] + 2 * (fid_set + kid_set + pr_set)
    out["projected_1000_s"] = {
        "paper": paper, "medicalnet": medical,
        "memorisation_extra": real_and_fake * per["memorisation_pooling"] + 2 * sets["memorisation_1000_vs_1000"],
        "deepbet_fid_kid_pr_extra": real_and_fake * per["deepbet"] + 2 * (fid_set + kid_set + pr_set)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
