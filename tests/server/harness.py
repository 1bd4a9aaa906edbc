"""Fixtures and helpers for tests that talk to a real server.

A session-wide hub on a real SQLite file in a tmp dir (``tiny``), with the tiny test family
(``tests.server.tiny_family``) and two trained models: ``tiny-digits`` (1x8x8
images, 10 classes) and ``tiny-points`` (2D points). Servers are real: either
in-process on an ephemeral loopback port (``BackgroundServer``), or a real
``genhub serve`` subprocess that finds the tiny family through an entry point.

``tiny_db`` is the same hub on SQLite and, for a second run of each test that uses it, one on a
database of the session's real PostgreSQL server (tests.databases). Only tests that exercise the
registry through a server use it (RegistryService, the generation log, alias moves): the rest of a
server's work (sampling, batching, cancellation, limits) never touches the database.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from hub.core import Hub
from hub.devices import hardware_description
from hub.model import TrainOptions
from hub.server.app import BackgroundServer
from tests.databases import BACKENDS, database_url
from tests.server import tiny_family

REPO = Path(__file__).resolve().parents[2]
IMAGE_MODEL = "tiny-digits"
POINTS_MODEL = "tiny-points"


@dataclass
class TinyHub:
    hub: Hub
    home: Path
    db_url: str

    def model(self, ref: str) -> Any:
        """The loaded model object (to read its ``steps_taken`` counter)."""
        return self.hub.load(ref).model


def open_tiny_hub(home: Path, *, bundled: bool = True, db_url: str | None = None) -> TinyHub:
    """A hub with the tiny test family; ``bundled=False`` leaves the plugins' shipped checkpoints (and their
    figures, measured on this kind of machine) out of the registry, for tests that route among their own versions.
    The registry is a SQLite file in ``home`` unless ``db_url`` names another."""
    home.mkdir(parents=True, exist_ok=True)
    db_url = db_url or f"sqlite:///{home}/r.db"
    hub = Hub.open(db_url=db_url, home=home, extra_plugins=[("tinyfamily", tiny_family)], sync=bundled)
    register_trained(hub, IMAGE_MODEL, "digits", card="# tiny-digits\n\nA tiny test model.", metrics={"fid": 123.0})
    register_trained(hub, POINTS_MODEL, "gmm-ring8")
    return TinyHub(hub, home, db_url)


def register_trained(hub: Hub, name: str, dataset_name: str, *, card: str | None = None,
                     metrics: dict[str, float] | None = None) -> Any:
    """Train a tiny model for a few real steps and register it as a new version of ``name``."""
    family = hub.parts.family("tiny")
    dataset = hub.dataset(dataset_name)
    config = family.default_config(dataset)
    model = family.build(config, hub.context())
    result = model.train(dataset, TrainOptions(steps=3, batch_size=16, seed=0))
    digest = hub.artifacts.put(model.state_dict(), metadata={"family": "tiny", "config": config.to_json()})
    hub.registry.ensure_model(name, "tiny", "tinyfamily", description=f"tiny trained on {dataset_name}")
    return hub.registry.add_version(
        name,
        config=config.to_dict(),
        artifact_digest=digest,
        dataset=dataset_name,
        card=card,
        training_run={"command": f"tests: {name}", "seed": 0, "steps": 3, "losses": result.losses, "hardware": "cpu"},
        metrics=[{"name": k, "value": v, "data": f"{dataset_name}:test"} for k, v in (metrics or {}).items()],
    )


def record_figures(hub: Hub, ref: str, *, fd: float, latency: float, sampler: str | None, steps: int,
                   conditional: bool = False) -> None:
    """What `genhub eval` records, measured "on this hardware", without running it."""
    hw = hardware_description()
    hub.registry.add_metric(ref, "fd", fd, data="digits:train", hardware=hw, sampler=sampler, steps=steps,
                            num_samples=64, details={"feature": "tiny-classifier", "dims": 16})
    if conditional:
        hub.registry.add_metric(ref, "class_agreement", 0.9, data="digits:test", hardware=hw, sampler=sampler, steps=steps)
    hub.registry.add_metric(ref, "latency_p50_ms_batch1", latency, data="digits", hardware=hw, sampler=sampler, steps=steps,
                            details={"p90_ms": latency * 1.5})


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyHub]:
    opened = open_tiny_hub(tmp_path_factory.mktemp("genhub-server"))
    yield opened
    opened.hub.close()


@pytest.fixture(scope="session")
def tiny_pg(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyHub]:
    """``tiny`` on a PostgreSQL database of its own (not the shared one that registry tests empty)."""
    url = database_url(request, Path(), "postgresql", empty=True)
    opened = open_tiny_hub(tmp_path_factory.mktemp("genhub-server-pg"), db_url=url)
    yield opened
    opened.hub.close()


@pytest.fixture(scope="session", params=BACKENDS)
def tiny_db(request: pytest.FixtureRequest) -> TinyHub:
    """``tiny`` itself (SQLite), then ``tiny_pg``: a test that uses it runs on both databases."""
    return request.getfixturevalue("tiny" if request.param == "sqlite" else "tiny_pg")


@contextmanager
def running_server(tiny: TinyHub, **options: Any) -> Iterator[BackgroundServer]:
    """A real server in this process on 127.0.0.1 with an ephemeral port."""
    server = BackgroundServer(tiny.hub, "127.0.0.1:0", **options)
    try:
        yield server
    finally:
        server.stop(grace_s=1.0)


@pytest.fixture(scope="session")
def server(tiny: TinyHub) -> Iterator[BackgroundServer]:
    """A shared server (step-level batching, the defaults)."""
    with running_server(tiny, max_batch=64) as started:
        yield started


@pytest.fixture(scope="session")
def db_server(tiny_db: TinyHub, request: pytest.FixtureRequest) -> Iterator[BackgroundServer]:
    """The shared server of ``tiny_db`` (``server`` itself on SQLite)."""
    if tiny_db.db_url.startswith("sqlite"):
        yield request.getfixturevalue("server")
        return
    with running_server(tiny_db, max_batch=64) as started:
        yield started


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition", every: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def worker_state(server: BackgroundServer, name: str) -> tuple[int, int]:
    """(requests queued, requests sampling) of the engine lane of model version ``name``, read on the server's loop."""
    states = server.run(lambda: {lane.name: (len(lane.pending), len(lane.active)) for lane in server.handle.engine.lanes.values()})
    return states.get(name, (0, 0))


# -- a real `genhub serve` subprocess -------------------------------------------------------------


def write_entry_point(root: Path) -> Path:
    """A dist-info folder that advertises tests.server.tiny_family in the `genhub` entry-point group.

    Putting ``root`` (and the repo) on PYTHONPATH lets a subprocess discover the
    plugin exactly as it would an installed third-party distribution.
    """
    dist = root / "genhub_tinyfamily-0.0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: genhub-tinyfamily\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text("[genhub]\ntinyfamily = tests.server.tiny_family\n")
    return root


STARTUP_S = 300.0  # bounds a subprocess's start and its drain on SIGTERM; either returns as soon as it is done


class ServeProcess:
    """`python -m hub serve` (the `genhub serve` command) on an ephemeral port."""

    def __init__(self, tiny: TinyHub, *args: str) -> None:
        entry_points = write_entry_point(tiny.home / "entry-points")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(entry_points), str(REPO), os.environ.get("PYTHONPATH", "")]),
            "GENHUB_DEVICE": "cpu",
            "PYTHONUNBUFFERED": "1",
        }
        command = [sys.executable, "-m", "hub", "serve", "--address", "127.0.0.1:0",
                   "--db", tiny.db_url, "--home", str(tiny.home), *args]
        self.process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.address = ""
        threading.Thread(target=self._read, daemon=True).start()
        # Generous: 2-3 s quiet, but on a loaded 2-core machine (tests at nice 10) it has taken over 60 s to print it.
        if not self._ready.wait(STARTUP_S) or not self.address:
            self.kill()
            raise AssertionError("genhub serve did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            match = re.search(r"genhub serving on (\S+)", line)
            if match:
                self.address = match.group(1)
                self._ready.set()
        self._ready.set()  # the process ended

    def terminate(self, timeout: float = STARTUP_S) -> int:
        self.process.terminate()  # SIGTERM
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    @property
    def log(self) -> str:
        return "".join(self.lines)


@pytest.fixture(scope="session")
def serve_process(tiny: TinyHub) -> Iterator[ServeProcess]:
    """One real `genhub serve` for the session; at the end SIGTERM must stop it cleanly."""
    process = ServeProcess(tiny, "--max-batch", "32", "--metrics-address", "127.0.0.1:0")
    try:
        yield process
        assert process.terminate() == 0, process.log
        assert "genhub server stopped" in process.log
    finally:
        process.kill()
