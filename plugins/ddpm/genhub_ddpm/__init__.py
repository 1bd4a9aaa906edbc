"""genhub-ddpm: denoising diffusion for genhub (the "ddpm" family and the "ddpm"/"ddim" samplers)."""

from genhub_ddpm.family import DDPMConfig, DDPMFamily, DDPMModel
from genhub_ddpm.samplers import DDIMSampler, DDPMSampler, ddim_step, ddpm_step, leading_timesteps

__all__ = [
    "DDIMSampler",
    "DDPMConfig",
    "DDPMFamily",
    "DDPMModel",
    "DDPMSampler",
    "ddim_step",
    "ddpm_step",
    "leading_timesteps",
]
__version__ = "0.1.0"
