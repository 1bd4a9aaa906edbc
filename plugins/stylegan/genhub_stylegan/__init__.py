"""genhub-stylegan: a StyleGAN2-style family ("stylegan") and a plain GAN baseline ("gan") for genhub."""

from genhub_stylegan.gan import GANConfig, GANFamily, GANModel
from genhub_stylegan.layers import modulated_conv2d
from genhub_stylegan.stylegan import SAMPLE_PARAMS, StyleGANConfig, StyleGANFamily, StyleGANModel

__all__ = [
    "SAMPLE_PARAMS",
    "GANConfig",
    "GANFamily",
    "GANModel",
    "StyleGANConfig",
    "StyleGANFamily",
    "StyleGANModel",
    "modulated_conv2d",
]
__version__ = "0.1.0"
