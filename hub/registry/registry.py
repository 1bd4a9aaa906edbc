"""The registry: models, their numbered versions, aliases, lineage and measurements.

``Registry(url)`` opens any SQLAlchemy URL and migrates it to the current
schema. Every method runs in its own transaction and returns frozen records
(``hub.registry.records``), so callers never hold ORM objects or sessions.
"""

from __future__ import annotations

import difflib
import json
import threading
from datetime import datetime, timezone
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.artifacts import ArtifactStore, check_digest
from hub.errors import AlreadyExists, InvalidArgument, NotFound
from hub.registry import convert
from hub.registry.db import WRITE, create_registry_engine, is_sqlite_memory, parse_url, upgrade
from hub.registry.notify import ALIAS_CHANNEL, AliasWatcher
from hub.registry.orm import (
    PLUGIN_STATUSES,
    Alias,
    Generation,
    IdBlock,
    Metric,
    Model,
    ModelVersion,
    Plugin,
    TrainingRun,
    utcnow,
)
from hub.registry.records import (
    GenerationRecord,
    MetricRecord,
    ModelRecord,
    PluginRecord,
    TrainingRunRecord,
    VersionRecord,
)
from hub.registry.refs import LATEST, check_alias, check_model_name, check_version, parse_ref
from hub.registry.tokens import TokenStore


GENERATIONS = "generations"  # the id block of the generation log


def generation_row(
    version_id: int | None,
    *,
    seed: int | None,
    params: dict[str, Any],
    num_samples: int,
    duration_s: float,
    status: str,
    error: str | None = None,
    artifact_digest: str | None = None,
) -> dict[str, Any]:
    """The checked columns of one generation log row (without its id); raises InvalidArgument on bad values."""
    if not isinstance(status, str) or not status:
        raise InvalidArgument("status", f"{status!r} is empty; use e.g. 'ok', 'error' or 'cancelled'")
    return {
        "version_id": version_id,
        "artifact_digest": check_digest(artifact_digest) if artifact_digest is not None else None,
        "seed": seed,
        "params": convert.dumps("params", params),
        "num_samples": num_samples,
        "duration_s": float(duration_s),
        "status": status,
        "error": error,
        "created_at": utcnow(),
    }


class Registry:
    """The model registry stored at a SQLAlchemy ``url`` (migrated on open)."""

    def __init__(self, url: str) -> None:
        parsed = parse_url(url)
        self.url = parsed.render_as_string()  # password hidden
        self._parsed_url = parsed
        self._engine = create_registry_engine(parsed)
        self._sqlite = parsed.get_backend_name() == "sqlite"
        # An in-memory SQLite DB is one shared connection: transactions must take turns.
        self._lock: AbstractContextManager[Any] = threading.RLock() if is_sqlite_memory(parsed) else nullcontext()
        try:
            upgrade(self._engine)
        except BaseException:
            self._engine.dispose()
            raise

    def close(self) -> None:
        self._engine.dispose()

    def watch_aliases(self, on_change: Callable[[str | None], None]) -> AliasWatcher | None:
        """Call ``on_change(model)`` whenever another process moves an alias (None: maybe any model moved).

        PostgreSQL pushes alias moves (LISTEN/NOTIFY); SQLite cannot, and returns None: poll instead.
        Close the watcher when done.
        """
        return None if self._sqlite else AliasWatcher(self._parsed_url, on_change)

    @property
    def tokens(self) -> TokenStore:
        """API tokens (hashes only): create, list, revoke."""
        return TokenStore(self._session)

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Registry({self.url!r})"

    @contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        """One transaction; ``write`` makes it BEGIN IMMEDIATE on SQLite (writers queue, none fails)."""
        with self._lock, self._engine.connect() as conn:
            if write:
                conn.execution_options(**{WRITE: True})
            with Session(bind=conn, expire_on_commit=False) as session, session.begin():
                yield session

    # --- plugins ---------------------------------------------------------------

    def sync_plugins(self, plugins: Iterable[tuple[str, str, str, str | None]]) -> list[PluginRecord]:
        """Upsert ``(name, version, status, error)`` rows; unchanged rows are left untouched."""
        rows = list(plugins)
        for name, version, status, _error in rows:
            if status not in PLUGIN_STATUSES:
                raise InvalidArgument(
                    "status", f"plugin {name!r} has status {status!r}; use one of {', '.join(PLUGIN_STATUSES)}"
                )
            if not name or not isinstance(version, str):
                raise InvalidArgument(
                    "plugins", f"bad row {(name, version)!r}; expected (name, version, status, error)"
                )
        for attempt in range(3):
            try:
                with self._session(write=True) as s:
                    existing = {p.name: p for p in s.scalars(select(Plugin))}
                    for name, version, status, error in rows:
                        row = existing.get(name)
                        if row is None:
                            existing[name] = row = Plugin(name=name, version=version, status=status, error=error)
                            s.add(row)
                        elif (row.version, row.status, row.error) != (version, status, error):
                            row.version, row.status, row.error, row.updated_at = version, status, error, utcnow()
                break
            except IntegrityError:  # another process inserted the same plugin first (non-SQLite backends)
                if attempt == 2:
                    raise
        return self.list_plugins()

    def list_plugins(self) -> list[PluginRecord]:
        with self._session() as s:
            return [
                PluginRecord(p.name, p.version, p.status, p.error, convert.utc(p.updated_at))
                for p in s.scalars(select(Plugin).order_by(Plugin.name))
            ]

    # --- models ----------------------------------------------------------------

    def ensure_model(self, name: str, family: str, plugin: str, description: str = "") -> ModelRecord:
        """The model ``name``, created if new; AlreadyExists if it is bound to another family."""
        check_model_name(name)
        for field_name, value in (("family", family), ("plugin", plugin)):
            if not isinstance(value, str) or not value:
                raise InvalidArgument(field_name, f"{value!r} is empty; name the {field_name} that serves {name!r}")
        for attempt in range(2):
            try:
                with self._session(write=True) as s:
                    model = s.scalar(select(Model).where(Model.name == name))
                    if model is None:
                        model = Model(name=name, family=family, plugin=plugin, description=description)
                        s.add(model)
                        s.flush()
                    elif model.family != family:
                        raise AlreadyExists(
                            f"model {name!r} already exists with family {model.family!r}, not {family!r}; "
                            f"choose another name for the {family!r} model"
                        )
                    return self._model_records(s, [model])[0]
            except IntegrityError:  # another process created it first (non-SQLite backends)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get_model(self, name: str) -> ModelRecord:
        with self._session() as s:
            return self._model_records(s, [self._model(s, name)])[0]

    def list_models(self, page_size: int = 50, page_token: str = "") -> tuple[list[ModelRecord], str]:
        """One page of models ordered by name, and the token of the next page ("" after the last)."""
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 1000:
            raise InvalidArgument("page_size", f"{page_size!r} is out of range; use 1 to 1000")
        after = convert.decode_token(page_token)
        with self._session() as s:
            query = select(Model).order_by(Model.name).limit(page_size + 1)
            if after is not None:
                query = query.where(Model.name > after)
            models = list(s.scalars(query))
            more = len(models) > page_size
            models = models[:page_size]
            token = convert.encode_token(models[-1].name) if more else ""
            return self._model_records(s, models), token

    # --- versions --------------------------------------------------------------

    def add_version(
        self,
        model_name: str,
        *,
        config: dict[str, Any],
        artifact_digest: str,
        dataset: str,
        parent: str | None = None,
        tags: Sequence[str] = (),
        card: str | None = None,
        training_run: dict[str, Any] | None = None,
        metrics: list[dict[str, Any]] | None = None,
    ) -> VersionRecord:
        """Add version max+1 with its training run and metrics, and point ``latest`` at it: one transaction."""
        if not isinstance(config, dict):
            raise InvalidArgument("config", f"expected a dict, got {type(config).__name__}")
        config_json = convert.dumps("config", config)
        digest = check_digest(artifact_digest)
        if not isinstance(dataset, str) or not dataset:
            raise InvalidArgument("dataset", f"{dataset!r} is empty; name the dataset the weights were trained on")
        tag_list = convert.check_tags(tags)
        if card is not None and not isinstance(card, str):
            raise InvalidArgument("card", f"expected markdown text, got {type(card).__name__}")
        run = convert.training_run_columns(training_run) if training_run is not None else None
        metric_rows = [convert.metric_columns(m, default_data=dataset) for m in metrics or []]
        with self._session(write=True) as s:
            model = self._model(s, model_name, for_update=True)
            parent_id = self._resolve(s, parent).id if parent is not None else None
            newest = s.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id))
            version = ModelVersion(
                model_id=model.id,
                version=(newest or 0) + 1,
                config=config_json,
                artifact_digest=digest,
                dataset=dataset,
                parent_version_id=parent_id,
                tags=json.dumps(tag_list),
                card=card,
            )
            s.add(version)
            s.flush()
            if run is not None:
                s.add(TrainingRun(version_id=version.id, **run))
            s.add_all(Metric(version_id=version.id, **m) for m in metric_rows)
            self._point_alias(s, model, LATEST, version.id)
            s.flush()
            return self._version_records(s, [version])[0]

    def resolve(self, ref: str) -> VersionRecord:
        """The version ``ref`` names: ``name`` (latest), ``name:3`` or ``name@alias``."""
        with self._session() as s:
            return self._version_records(s, [self._resolve(s, ref)])[0]

    def get_version(self, version_id: int) -> VersionRecord:
        """A version by its database id (as stored in generations, metrics and runs)."""
        with self._session() as s:
            return self._version_records(s, [self._version_by_id(s, version_id)])[0]

    def list_versions(self, name: str) -> list[VersionRecord]:
        with self._session() as s:
            model = self._model(s, name)
            rows = s.scalars(
                select(ModelVersion).where(ModelVersion.model_id == model.id).order_by(ModelVersion.version)
            )
            return self._version_records(s, list(rows))

    def find_version_by_digest(self, model_name: str, digest: str) -> VersionRecord | None:
        """The oldest version of ``model_name`` with these weights; None if none (or no such model)."""
        digest = check_digest(digest)
        with self._session() as s:
            row = s.scalar(
                select(ModelVersion)
                .join(Model, Model.id == ModelVersion.model_id)
                .where(Model.name == model_name, ModelVersion.artifact_digest == digest)
                .order_by(ModelVersion.version)
                .limit(1)
            )
            return self._version_records(s, [row])[0] if row is not None else None

    def lineage(self, ref: str) -> list[VersionRecord]:
        """The version ``ref`` names, then its parent, grandparent, ... (oldest last)."""
        with self._session() as s:
            chain = [self._resolve(s, ref)]
            seen = {chain[0].id}
            while (parent_id := chain[-1].parent_version_id) is not None and parent_id not in seen:
                seen.add(parent_id)
                chain.append(self._version_by_id(s, parent_id))
            return self._version_records(s, chain)

    # --- aliases ---------------------------------------------------------------

    def set_alias(self, model_name: str, alias: str, version: int) -> VersionRecord:
        """Point ``alias`` at ``version`` of ``model_name`` (creating or moving it)."""
        check_alias(alias)
        check_version(version)
        with self._session(write=True) as s:
            model = self._model(s, model_name, for_update=True)
            row = s.scalar(
                select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.version == version)
            )
            if row is None:
                raise NotFound(f"model {model.name!r} has no version {version}; {self._available(s, model)}")
            self._point_alias(s, model, alias, row.id)
            s.flush()
            return self._version_records(s, [row])[0]

    def delete_alias(self, model_name: str, alias: str) -> None:
        check_alias(alias)
        if alias == LATEST:
            raise InvalidArgument(
                "alias", f"{LATEST!r} is managed by the registry and cannot be deleted; move it with set_alias"
            )
        with self._session(write=True) as s:
            model = self._model(s, model_name, for_update=True)
            row = s.scalar(select(Alias).where(Alias.model_id == model.id, Alias.name == alias))
            if row is None:
                raise NotFound(f"model {model.name!r} has no alias {alias!r}; {self._available(s, model)}")
            s.delete(row)
            self._notify_aliases(s, model.name)

    # --- training runs and metrics ---------------------------------------------

    def add_metric(
        self,
        ref_or_version_id: str | int,
        name: str,
        value: float,
        *,
        data: str,
        num_samples: int | None = None,
        hardware: str | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> MetricRecord:
        """Record one measurement of a version (by ref, or by version id)."""
        columns = convert.metric_columns(
            dict(name=name, value=value, data=data, num_samples=num_samples, hardware=hardware,
                 sampler=sampler, steps=steps, details=details or {}),
            default_data=None,
        )  # fmt: skip
        with self._session(write=True) as s:
            if isinstance(ref_or_version_id, str):
                version = self._resolve(s, ref_or_version_id)
            else:
                version = self._version_by_id(s, ref_or_version_id)
            row = Metric(version_id=version.id, **columns)
            s.add(row)
            s.flush()
            return self._metric_records(s, [row])[0]

    def metrics(self, ref: str) -> list[MetricRecord]:
        with self._session() as s:
            version = self._resolve(s, ref)
            rows = s.scalars(select(Metric).where(Metric.version_id == version.id).order_by(Metric.id))
            return self._metric_records(s, list(rows))

    def training_runs(self, ref: str) -> list[TrainingRunRecord]:
        with self._session() as s:
            version = self._resolve(s, ref)
            rows = s.scalars(select(TrainingRun).where(TrainingRun.version_id == version.id).order_by(TrainingRun.id))
            refs = self._refs(s, [version.id])
            return [convert.training_record(r, refs[r.version_id]) for r in rows]

    # --- generations -----------------------------------------------------------

    def log_generation(self, version_id: int | None, **columns: Any) -> int:
        """Log one generation request (served or failed) now, in a transaction of its own; return its id.

        ``columns``: ``generation_row``'s keywords (seed, params, num_samples, duration_s, status, error,
        artifact_digest). ``version_id`` is None for a request that failed before resolving a version;
        ``artifact_digest`` defaults to that version's weights. Servers log through
        ``hub.registry.genlog.GenerationLog`` instead (batched, off the request's path).
        """
        row = generation_row(version_id, **columns)
        with self._session(write=True) as s:
            if version_id is not None:
                version = self._version_by_id(s, version_id)
                if row["artifact_digest"] is None:  # by default, the weights that served it
                    row["artifact_digest"] = version.artifact_digest
            row["id"] = self._reserve(s, GENERATIONS, 1).start
            s.execute(insert(Generation), [row])
            return row["id"]

    def reserve_ids(self, table: str, count: int) -> range:
        """``count`` ids of ``table`` that no other process will use (``id_blocks``): one short transaction."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidArgument("count", f"{count!r} is not a positive number of ids")
        with self._session(write=True) as s:
            return self._reserve(s, table, count)

    def write_generations(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert generation rows (from ``generation_row``, ids reserved with ``reserve_ids``) in one transaction."""
        if rows:  # Core executemany: the ORM's per-row bookkeeping costs several times the insert itself
            with self._lock, self._engine.connect() as conn:
                conn.execution_options(**{WRITE: True})
                with conn.begin():
                    conn.execute(Generation.__table__.insert(), list(rows))

    def prune_generations(self, before: datetime) -> int:
        """Delete generation log rows created before ``before`` (naive UTC, or aware); return how many."""
        cutoff = before.astimezone(timezone.utc).replace(tzinfo=None) if before.tzinfo else before
        with self._session(write=True) as s:
            result = s.execute(delete(Generation).where(Generation.created_at < cutoff))
            return int(result.rowcount or 0)

    def generations(self, limit: int = 100, *, model: str | None = None) -> list[GenerationRecord]:
        """The newest ``limit`` generations, newest first; only ``model``'s when given."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidArgument("limit", f"{limit!r} is out of range; use 1 to 10000")
        with self._session() as s:
            # Newest first by time: ids come in per-process blocks, so across processes they are not in time order.
            query = select(Generation).order_by(Generation.created_at.desc(), Generation.id.desc()).limit(limit)
            if model is not None:
                owned = select(ModelVersion.id).where(ModelVersion.model_id == self._model(s, model).id)
                query = query.where(Generation.version_id.in_(owned))
            rows = list(s.scalars(query))
            refs = self._refs(s, [r.version_id for r in rows if r.version_id is not None])
            return [convert.generation_record(r, refs.get(r.version_id) if r.version_id else None) for r in rows]

    # --- consistency -----------------------------------------------------------

    def check_consistency(self, store: ArtifactStore) -> list[str]:
        """Problems found (missing or corrupt artifacts, a damaged DB file); [] if consistent."""
        problems: list[str] = []
        with self._session() as s:
            if self._sqlite:
                results = [str(r) for r in s.execute(text("PRAGMA integrity_check")).scalars()]
                if results != ["ok"]:
                    problems += [f"database integrity_check: {r}; restore the registry from a backup" for r in results]
                for table, rowid, parent, _fk in s.execute(text("PRAGMA foreign_key_check")):
                    problems.append(f"database: {table} row {rowid} references a missing {parent} row")
            versions = s.execute(
                select(Model.name, ModelVersion.version, ModelVersion.artifact_digest)
                .join(Model, Model.id == ModelVersion.model_id)
                .order_by(Model.name, ModelVersion.version)
            ).all()
        states: dict[str, str] = {}  # digest -> ok | missing | corrupt | malformed; each file hashed once
        for name, number, digest in versions:
            if digest not in states:
                try:
                    states[digest] = (
                        "missing" if not store.exists(digest) else "ok" if store.verify(digest) else "corrupt"
                    )
                except InvalidArgument:
                    states[digest] = "malformed"
            state = states[digest]
            if state == "missing":
                problems.append(
                    f"{name}:{number}: artifact {digest} is missing from {store.root}; import its weights again"
                )
            elif state == "corrupt":
                problems.append(
                    f"{name}:{number}: artifact {store.path(digest)} does not hash to {digest}; "
                    "delete the file and import the weights again"
                )
            elif state == "malformed":
                problems.append(f"{name}:{number}: stored digest {digest!r} is not a sha256 digest")
        return problems

    # --- internals -------------------------------------------------------------

    def _model(self, s: Session, name: str, *, for_update: bool = False) -> Model:
        query = select(Model).where(Model.name == name)
        if for_update:  # serialises add_version per model on backends with row locks
            query = query.with_for_update()
        model = s.scalar(query)
        if model is None:
            check_model_name(name)
            names = list(s.scalars(select(Model.name).order_by(Model.name)))
            close = difflib.get_close_matches(name, names, n=3)
            if close:
                hint = f"did you mean {', '.join(close)}?"
            elif names:
                hint = f"models: {', '.join(names[:20])}" + (f" and {len(names) - 20} more" if len(names) > 20 else "")
            else:
                hint = "the registry has no models yet; train or import one first"
            raise NotFound(f"no model named {name!r}; {hint}")
        return model

    def _resolve(self, s: Session, ref: str) -> ModelVersion:
        parsed = parse_ref(ref)
        model = self._model(s, parsed.model)
        if parsed.version is not None:
            row = s.scalar(
                select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.version == parsed.version)
            )
            if row is None:
                raise NotFound(f"model {model.name!r} has no version {parsed.version}; {self._available(s, model)}")
            return row
        row = s.scalar(
            select(ModelVersion)
            .join(Alias, Alias.version_id == ModelVersion.id)
            .where(Alias.model_id == model.id, Alias.name == parsed.alias)
        )
        if row is None:
            raise NotFound(f"model {model.name!r} has no alias {parsed.alias!r}; {self._available(s, model)}")
        return row

    def _version_by_id(self, s: Session, version_id: int) -> ModelVersion:
        row = s.get(ModelVersion, version_id)
        if row is None:
            raise NotFound(f"no model version with id {version_id}; look versions up by reference (name:version)")
        return row

    def _available(self, s: Session, model: Model) -> str:
        """What a model has, for NotFound messages: its versions and aliases."""
        numbers = list(s.scalars(select(ModelVersion.version).where(ModelVersion.model_id == model.id)))
        if not numbers:
            return "it has no versions yet; train or import one first"
        aliases = s.execute(
            select(Alias.name, ModelVersion.version)
            .join(ModelVersion, ModelVersion.id == Alias.version_id)
            .where(Alias.model_id == model.id)
            .order_by(Alias.name)
        ).all()
        alias_text = ", ".join(f"{a} -> {v}" for a, v in aliases) or "none"
        return f"available versions: {convert.ranges(numbers)}; aliases: {alias_text}"

    def _reserve(self, s: Session, table: str, count: int) -> range:
        row = s.get(IdBlock, table, with_for_update=True)
        if row is None:
            raise InvalidArgument("table", f"{table!r} has no id block; ids are reserved for: {GENERATIONS}")
        start = row.next_id
        row.next_id = start + count
        s.flush()
        return range(start, start + count)

    def _point_alias(self, s: Session, model: Model, name: str, version_id: int) -> None:
        """Create or move an alias; the caller holds ``model``'s row lock (two movers cannot both insert)."""
        row = s.scalar(select(Alias).where(Alias.model_id == model.id, Alias.name == name))
        if row is None:
            s.add(Alias(model_id=model.id, name=name, version_id=version_id))
        else:
            row.version_id = version_id
        self._notify_aliases(s, model.name)

    def _notify_aliases(self, s: Session, model_name: str) -> None:
        """PostgreSQL: tell listening servers (``watch_aliases``) at commit that ``model_name``'s aliases moved."""
        if not self._sqlite:
            s.execute(text("SELECT pg_notify(:channel, :model)"), {"channel": ALIAS_CHANNEL, "model": model_name})

    def _refs(self, s: Session, version_ids: Iterable[int]) -> dict[int, str]:
        ids = set(version_ids)
        if not ids:
            return {}
        rows = s.execute(
            select(ModelVersion.id, Model.name, ModelVersion.version)
            .join(Model, Model.id == ModelVersion.model_id)
            .where(ModelVersion.id.in_(ids))
        )
        return {vid: f"{name}:{number}" for vid, name, number in rows}

    def _model_records(self, s: Session, models: list[Model]) -> list[ModelRecord]:
        ids = [m.id for m in models]
        counts: dict[int, int] = {
            mid: n
            for mid, n in s.execute(
                select(ModelVersion.model_id, func.count())
                .where(ModelVersion.model_id.in_(ids))
                .group_by(ModelVersion.model_id)
            )
        }
        latest: dict[int, int] = {
            mid: v
            for mid, v in s.execute(
                select(Alias.model_id, ModelVersion.version)
                .join(ModelVersion, ModelVersion.id == Alias.version_id)
                .where(Alias.name == LATEST, Alias.model_id.in_(ids))
            )
        }
        return [
            ModelRecord(
                m.id,
                m.name,
                m.family,
                m.plugin,
                m.description,
                convert.utc(m.created_at),
                latest.get(m.id),
                counts.get(m.id, 0),
            )
            for m in models
        ]

    def _version_records(self, s: Session, rows: list[ModelVersion]) -> list[VersionRecord]:
        if not rows:
            return []
        models = {m.id: m for m in s.scalars(select(Model).where(Model.id.in_({r.model_id for r in rows})))}
        aliases: dict[int, list[str]] = defaultdict(list)
        for alias in s.scalars(select(Alias).where(Alias.version_id.in_([r.id for r in rows])).order_by(Alias.name)):
            aliases[alias.version_id].append(alias.name)
        parents = self._refs(s, [r.parent_version_id for r in rows if r.parent_version_id is not None])
        return [
            VersionRecord(
                id=r.id,
                model=models[r.model_id].name,
                family=models[r.model_id].family,
                version=r.version,
                config=json.loads(r.config),
                artifact_digest=r.artifact_digest,
                dataset=r.dataset,
                parent=parents.get(r.parent_version_id) if r.parent_version_id is not None else None,
                parent_version_id=r.parent_version_id,
                tags=tuple(json.loads(r.tags)),
                card=r.card,
                created_at=convert.utc(r.created_at),
                aliases=tuple(aliases[r.id]),
            )
            for r in rows
        ]

    def _metric_records(self, s: Session, rows: list[Metric]) -> list[MetricRecord]:
        refs = self._refs(s, [r.version_id for r in rows])
        return [
            MetricRecord(
                r.id, r.version_id, refs[r.version_id], r.name, r.value, r.data, r.num_samples, r.hardware,
                r.sampler, r.steps, json.loads(r.details), convert.utc(r.created_at),
            )
            for r in rows
        ]  # fmt: skip
