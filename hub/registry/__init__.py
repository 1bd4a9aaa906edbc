"""The model registry: a SQL database of models, versions, aliases, lineage and metrics.

Weights live in the content-addressed ``hub.artifacts.ArtifactStore``; the
registry stores their sha256 digests. Open one with ``Registry(url)`` (any
SQLAlchemy URL; migrations run on open), or find the default location with
``default_db_url()`` and ``default_artifacts_root()``.
"""

from hub.registry.paths import default_artifacts_root, default_db_url, default_home
from hub.registry.records import (
    GenerationRecord,
    MetricRecord,
    ModelRecord,
    PluginRecord,
    TrainingRunRecord,
    VersionRecord,
)
from hub.registry.refs import LATEST, Ref, parse_ref
from hub.registry.registry import Registry

__all__ = [
    "LATEST",
    "GenerationRecord",
    "MetricRecord",
    "ModelRecord",
    "PluginRecord",
    "Ref",
    "Registry",
    "TrainingRunRecord",
    "VersionRecord",
    "default_artifacts_root",
    "default_db_url",
    "default_home",
    "parse_ref",
]
