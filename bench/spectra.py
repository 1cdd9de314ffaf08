"""Stripes as numbers: the share of spectral power at high spatial frequencies (bench_ada, bench_antialias)."""
import numpy as np

HIGH = 0.25  # cycles per voxel (Nyquist is 0.5)


def high_power_mask(shape, cutoff=HIGH):
    """[X, Y, Z] bool: the FFT bins above `cutoff` cycles per voxel along any axis."""
    grids = np.meshgrid(*(np.abs(np.fft.fftfreq(n)) for n in shape), indexing="ij")
    return np.maximum.reduce(grids) > cutoff


def high_frequency_fraction(volumes, cutoff=HIGH):
    """The mean over volumes [N, X, Y, Z, C] of the share of spectral power (mean removed) at spatial frequencies
    above `cutoff` cycles per voxel along any axis."""
    v = np.asarray(volumes, np.float64)[..., 0]
    power = np.abs(np.fft.fftn(v - v.mean(axis=(1, 2, 3), keepdims=True), axes=(1, 2, 3))) ** 2
    high = high_power_mask(v.shape[1:], cutoff)
    return float(np.mean(power[:, high].sum(1) / power.reshape(len(v), -1).sum(1)))
