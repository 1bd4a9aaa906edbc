"""A local Ray instance with Serve's gRPC ingress, started and stopped once per test session.

The app serves a tiny hub of its own (a real SQLite file in a tmp dir): the two
models of the shared client suite, ``tiny-scale`` (short autoscaling delays) and
``tiny-kill`` (two replicas, for the replica-failure test), ``tiny-queue`` (one
request at a time, one more queued: the queue-limit test) and ``tiny-sd`` (a tiny
StableDiffusionPipeline folder imported with genhub-diffusers). Ray workers find the
tiny test family through an entry point on PYTHONPATH, as a subprocess server does.
At the end, every process Ray started must be gone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import pytest

from hub import auth
from hub.client import Client
from hub.core import Hub
from tests.server.harness import POINTS_MODEL, IMAGE_MODEL, REPO, TinyHub, open_tiny_hub, register_trained, write_entry_point

SCALE_MODEL = "tiny-scale"
KILL_MODEL = "tiny-kill"
KILL_MAX_ONGOING = 4
QUEUE_MODEL = "tiny-queue"
IMPORTED_MODEL = "tiny-sd"  # a StableDiffusionPipeline folder imported with genhub-diffusers
QUEUE = {"max_ongoing_requests": 1, "max_queued_requests": 1, "max_batch_size": 1}
SCALE = {  # short delays (NOTES.md): scale-up decided within seconds, back down ~10 s after the load stops
    "num_cpus": 0.1, "min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2, "max_ongoing_requests": 4,
    "upscale_delay_s": 1, "downscale_delay_s": 6, "metrics_interval_s": 1, "look_back_period_s": 2,
}


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def bundled_models(hub: Hub) -> list[str]:
    """Names of the models the installed plugins ship (tagged "pretrained")."""
    return sorted(p.name for p in hub.parts.pretrained.values())


def one_bundled_model_per_family(hub: Hub) -> list[str]:
    """The first shipped checkpoint of each family: what Ray adds (a replica loading a family's weights from the
    shared store) is per family; every checkpoint's own samples are checked in process by its plugin's tests.
    A replica costs a worker process (seconds of CPU), so deploying all twelve cost the session a minute."""
    first: dict[str, str] = {}
    for shipped in sorted(hub.parts.pretrained.values(), key=lambda p: p.name):
        first.setdefault(shipped.family, shipped.name)
    return sorted(first.values())


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyHub]:
    opened = open_tiny_hub(tmp_path_factory.mktemp("genhub-ray"))
    register_trained(opened.hub, SCALE_MODEL, "digits")
    register_trained(opened.hub, KILL_MODEL, "digits")
    register_trained(opened.hub, QUEUE_MODEL, "digits")
    from genhub_diffusers import import_pipeline
    from genhub_diffusers.testing import save_text_pipeline

    import_pipeline(opened.hub, save_text_pipeline(tmp_path_factory.mktemp("sd-pipeline") / "sd"), IMPORTED_MODEL)
    yield opened
    opened.hub.close()


@pytest.fixture(scope="session")
def tiny_db(tiny: TinyHub) -> TinyHub:
    """Shared tests that run on both databases with the local server run on this session's hub (SQLite) here."""
    return tiny


@pytest.fixture(scope="session")
def ray_metrics_port() -> int:
    """Where the session's Ray serves its metrics (Prometheus text: the genhub series as ray_genhub_*)."""
    from hub.ray import runner

    return runner.free_port()


@pytest.fixture(scope="session")
def ray_app(tiny: TinyHub, ray_metrics_port: int) -> Iterator[str]:
    """The genhub Serve app on a local Ray instance; yields the gRPC address (127.0.0.1:PORT)."""
    from hub.ray import app, runner
    from hub.ray.settings import ServeSettings

    entry_points = write_entry_point(tiny.home / "entry-points")
    os.environ.update({
        "RAY_AUTH_MODE": "disabled",
        "PYTHONPATH": os.pathsep.join([str(entry_points), str(REPO), os.environ.get("PYTHONPATH", "")]),
        "GENHUB_DEVICE": "cpu",
        **runner.FAST_AUTOSCALING_ENV,
    })
    port = runner.free_port()
    base = ServeSettings(num_cpus=0.1, max_ongoing_requests=32, max_batch_size=16)
    settings = {
        IMAGE_MODEL: base,
        POINTS_MODEL: base,
        SCALE_MODEL: base.replace(SCALE, "tests"),
        QUEUE_MODEL: base.replace(QUEUE, "tests"),
        KILL_MODEL: base.replace({"min_replicas": 2, "max_replicas": 2, "max_ongoing_requests": KILL_MAX_ONGOING}, "tests"),
        IMPORTED_MODEL: base.replace({"num_cpus": 0.02}, "tests"),
        # a checkpoint of each family the plugins ship, as `genhub serve --backend ray` serves them (small CPU shares)
        **{name: base.replace({"num_cpus": 0.02}, "tests") for name in one_bundled_model_per_family(tiny.hub)},
    }
    auth.create_initial_tokens(tiny.hub.registry, tiny.home)  # what `genhub serve --backend ray` does on a first start
    # Start-up sends the admin token; tests here get it from `session_token` below, never the rest of the session
    # (a leaked GENHUB_TOKEN would be sent by every later CLI call and client, to servers that do not know it).
    previous_token = os.environ.get(auth.TOKEN_ENV)
    os.environ[auth.TOKEN_ENV] = auth.read_tokens_file(auth.tokens_path(tiny.home))[auth.ADMIN]
    before = descendants(os.getpid())
    try:
        runner.start(port, num_cpus=2, metrics_port=ray_metrics_port)
        runner.run(app.build(app.HubArgs(tiny.db_url, str(tiny.home)), settings))
        _restore_token(previous_token)
        yield f"127.0.0.1:{port}"
    finally:
        started = descendants(os.getpid()) - before
        runner.stop()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(p) for p in started):
            time.sleep(0.2)
        left = sorted(p for p in started if alive(p))
        _restore_token(previous_token)
        assert not left, f"Ray processes outlived the test session: {left}"


def _restore_token(previous: str | None) -> None:
    os.environ.pop(auth.TOKEN_ENV, None)
    if previous is not None:
        os.environ[auth.TOKEN_ENV] = previous


@pytest.fixture(autouse=True)
def session_token(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients of the tests here (Client(ray_app) with no home) send the session app's admin token."""
    if "ray_app" in request.fixturenames:
        request.getfixturevalue("ray_app")
        home = request.getfixturevalue("tiny").home
        monkeypatch.setenv(auth.TOKEN_ENV, auth.read_tokens_file(auth.tokens_path(home))[auth.ADMIN])


@pytest.fixture
def client(ray_app: str) -> Iterator[Client]:
    with Client(ray_app, timeout=60) as opened:
        yield opened
