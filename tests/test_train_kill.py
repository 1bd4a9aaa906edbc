"""`genhub train` killed with SIGKILL at any moment leaves the registry and the store consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hub.artifacts import ArtifactStore
from hub.registry import Registry, default_artifacts_root, default_db_url

TINY = ["--set", "base_channels=8", "--set", "channel_mults=[1,2]", "--set", "num_timesteps=50"]


def train_command(steps: int) -> list[str]:
    return [sys.executable, "-m", "hub", "train", "ddpm", "--dataset", "digits", "--name", "killme",
            "--steps", str(steps), "--batch-size", "8", "--device", "cpu", *TINY]


def assert_consistent(home: Path) -> list[int]:
    store = ArtifactStore(default_artifacts_root(home))
    with Registry(default_db_url(home)) as registry:
        assert registry.check_consistency(store) == []
        versions = registry.list_versions("killme") if registry.list_models()[0] else []
        for v in versions:
            assert store.verify(v.artifact_digest)
            assert len(registry.training_runs(v.ref)) == 1
        return [v.version for v in versions]


def test_sigkill_at_any_moment_leaves_registry_and_store_consistent(hub_home: Path) -> None:
    env = {**os.environ, "GENHUB_HOME": str(hub_home)}
    started = time.monotonic()
    subprocess.run(train_command(10), env=env, check=True, capture_output=True)
    full = time.monotonic() - started
    assert assert_consistent(hub_home) == [1]

    # Kill points spread over the whole run, denser near the end where the artifact and the
    # version are written.
    registered_before = 1
    for fraction in (0.5, 0.9, 0.97, 1.02):
        proc = subprocess.Popen(train_command(10), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(full * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        versions = assert_consistent(hub_home)
        # a version exists exactly when its run got as far as registering it; numbering stays dense
        assert versions == list(range(1, len(versions) + 1))
        assert len(versions) >= registered_before
        registered_before = len(versions)

    # stale temp files of killed writers are removed on the next open
    store = ArtifactStore(default_artifacts_root(hub_home))
    store.cleanup_temp()
    leftovers = [p for p in Path(store.root).rglob("*") if p.is_file() and not p.name.endswith(".safetensors")]
    assert leftovers == []
