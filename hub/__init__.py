"""genhub: a plugin-based registry and serving hub for generative image models.

The core knows no model family: families, samplers and datasets arrive through
pluggy plugins discovered in the ``genhub`` entry-point group.
"""

from hub.hookspecs import hookimpl

__all__ = ["hookimpl"]
__version__ = "0.1.0"
