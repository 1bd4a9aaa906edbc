"""genhub-ddgan: GANs that accelerate diffusion, the "ddgan" (Denoising Diffusion GAN) and "distill"
(adversarial distillation of a diffusion teacher) families."""

from genhub_ddgan.ddgan import DDGANConfig, DDGANFamily, DDGANModel
from genhub_ddgan.distill import DistillConfig, DistillFamily, DistillModel
from genhub_ddgan.process import FewStepProcess, vp_alphas_cumprod

__all__ = [
    "DDGANConfig",
    "DDGANFamily",
    "DDGANModel",
    "DistillConfig",
    "DistillFamily",
    "DistillModel",
    "FewStepProcess",
    "vp_alphas_cumprod",
]
__version__ = "0.1.0"
