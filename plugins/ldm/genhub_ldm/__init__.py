"""genhub-ldm: latent diffusion (autoencoder + latent denoiser with cross-attention), a genhub plugin."""
