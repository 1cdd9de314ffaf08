"""Pure TensorFlow ops of 3D-StyleGAN, channels-last `[B, X, Y, Z, C]`."""
from tf3dstylegan.ops.bias_act import ACTIVATIONS, bias_act, bias_lrelu
from tf3dstylegan.ops.mbstd import minibatch_stddev
from tf3dstylegan.ops.modulation import (apply_demodulation, demodulation_coefficients, modulated_conv3d,
                                         modulated_conv3d_deferred, normalize_2nd_moment, style_scales)
from tf3dstylegan.ops.upfirdn3d import (conv3d_same, conv_downsample3d, downsample3d, fir3d, fir_taps,
                                        upsample3d, upsample_conv3d, zero_insert)

__all__ = [
    "ACTIVATIONS", "bias_act", "bias_lrelu", "minibatch_stddev", "apply_demodulation", "demodulation_coefficients",
    "modulated_conv3d", "modulated_conv3d_deferred", "normalize_2nd_moment", "style_scales", "conv3d_same",
    "conv_downsample3d", "downsample3d", "fir3d", "fir_taps",
    "upsample3d", "upsample_conv3d", "zero_insert",
]
