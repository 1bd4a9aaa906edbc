"""The registry schema as SQLAlchemy typed ORM classes.

Alembic migrations in ``migrations/versions`` create exactly this schema (a test
compares them). Change a class here, then add a migration.

JSON columns are TEXT holding ``json.dumps(..., sort_keys=True)``: portable to
every backend and readable with the sqlite3 shell. Times are naive UTC.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints, so later migrations (batch mode on SQLite) can address them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PLUGIN_STATUSES = ("loaded", "failed", "disabled")


def utcnow() -> datetime:
    """Now, as naive UTC (what the DateTime columns store)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Plugin(Base):
    """A plugin seen at the last start-up and whether it loaded."""

    __tablename__ = "plugins"
    __table_args__ = (CheckConstraint("status IN ('loaded', 'failed', 'disabled')", name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    version: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Model(Base):
    """A name bound to one family; its weights live in numbered versions."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    family: Mapped[str] = mapped_column(String(200))
    plugin: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ModelVersion(Base):
    """One immutable version: a config plus the digest of its safetensors weights."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version"),
        Index("ix_model_versions_model_id_artifact_digest", "model_id", "artifact_digest"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    version: Mapped[int] = mapped_column(Integer)
    config: Mapped[str] = mapped_column(Text)  # JSON object
    artifact_digest: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    parent_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))  # lineage
    tags: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of str
    card: Mapped[str | None] = mapped_column(Text)  # markdown model card


class Alias(Base):
    """A movable name for a version, unique per model (``latest`` is kept up to date)."""

    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("model_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    name: Mapped[str] = mapped_column(String(100))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))


class TrainingRun(Base):
    """How a version's weights were produced."""

    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    command: Mapped[str] = mapped_column(Text, default="")
    seed: Mapped[int | None] = mapped_column(BigInteger)  # seeds are 63-bit
    steps: Mapped[int | None] = mapped_column(Integer)
    wall_time_s: Mapped[float | None] = mapped_column(Float)
    losses: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of float
    hardware: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class Metric(Base):
    """One measured number for a version, with what it was measured on and how."""

    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)
    data: Mapped[str] = mapped_column(String(200))  # dataset and split, e.g. "digits:test"
    num_samples: Mapped[int | None] = mapped_column(Integer)
    hardware: Mapped[str | None] = mapped_column(String(200))
    sampler: Mapped[str | None] = mapped_column(String(100))
    steps: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Generation(Base):
    """One generation request served (or failed), for audit and statistics."""

    __tablename__ = "generations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # NULL when the request failed before a version was resolved.
    version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), index=True)
    artifact_digest: Mapped[str | None] = mapped_column(String(64))  # the weights that served it (provenance)
    seed: Mapped[int | None] = mapped_column(BigInteger)  # seeds are 63-bit
    params: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    num_samples: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class ApiToken(Base):
    """An API token: only its SHA-256 is stored (``hub.auth``); the token itself is shown once, at creation."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint("scope IN ('generate', 'admin')", name="scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    scope: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # hex SHA-256
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)  # NULL: never


class IdBlock(Base):
    """The next free id of a table whose ids processes reserve in blocks (``Registry.reserve_ids``)."""

    __tablename__ = "id_blocks"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)  # the table, e.g. "generations"
    next_id: Mapped[int] = mapped_column(BigInteger)
