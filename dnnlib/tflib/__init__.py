"""Only `dnnlib.tflib.network.Network`, the class legacy pickles name."""
