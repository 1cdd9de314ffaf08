"""The math of 3D-StyleGAN as pure functions in `keras.ops`, channels-last `[B, X, Y, Z, C]`: the same code on the
TensorFlow, JAX and PyTorch backends (TensorFlow variants where measured faster: `tf3dstylegan.backend`)."""
from tf3dstylegan.ops.bias_act import ACTIVATIONS, accumulator_dtype, bias_act, bias_lrelu
from tf3dstylegan.ops.mbstd import minibatch_stddev
from tf3dstylegan.ops.modulation import (apply_demodulation, demodulation_coefficients, modulated_conv3d,
                                         normalize_2nd_moment, style_scales)
from tf3dstylegan.ops.upfirdn3d import (conv3d_same, conv_downsample3d, downsample3d, fir3d, fir_taps,
                                        upsample3d, upsample_conv3d, zero_insert)

__all__ = [
    "ACTIVATIONS", "accumulator_dtype", "bias_act", "bias_lrelu", "minibatch_stddev", "apply_demodulation",
    "demodulation_coefficients", "modulated_conv3d", "normalize_2nd_moment", "style_scales", "conv3d_same",
    "conv_downsample3d", "downsample3d", "fir3d", "fir_taps", "upsample3d", "upsample_conv3d", "zero_insert",
]
