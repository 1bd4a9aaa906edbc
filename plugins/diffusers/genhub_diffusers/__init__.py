"""genhub-diffusers: serve diffusers DDPM/DDIM pipeline folders through genhub's registry, samplers and servers."""

from genhub_diffusers.family import DiffusersConfig, DiffusersFamily, DiffusersModel
from genhub_diffusers.importer import import_pipeline
from genhub_diffusers.pipeline import UnsupportedPipeline, read_pipeline

__all__ = ["DiffusersConfig", "DiffusersFamily", "DiffusersModel", "UnsupportedPipeline", "import_pipeline", "read_pipeline"]
