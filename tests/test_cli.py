"""The `genhub` command line against the real bundled DDPM, in a fresh home (registry on SQLite or PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hub.core import Hub
from hub.testing import run_cli
from tests.databases import BACKENDS, database_url


def genhub(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GENHUB_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "hub", *args], env=env, capture_output=True, text=True, check=check)


@pytest.fixture(params=BACKENDS)
def cli_home(request: pytest.FixtureRequest, hub_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh home whose registry is a SQLite file in it, or (GENHUB_DB) an emptied PostgreSQL database."""
    if request.param != "sqlite":
        monkeypatch.setenv("GENHUB_DB", database_url(request, hub_home))
    return hub_home


def test_bundled_model_is_synced_once_and_shown_with_its_training_command(cli_home: Path) -> None:
    for _ in range(2):  # the second open must not add a version
        with Hub.open(home=cli_home) as hub:
            versions = hub.registry.list_versions("ddpm-digits")
    assert [v.version for v in versions] == [1]
    assert "pretrained" in versions[0].tags
    shown = genhub("models", "show", "ddpm-digits", home=cli_home).stdout
    assert "genhub train ddpm --dataset digits16" in shown
    assert versions[0].artifact_digest in shown
    listed = genhub("models", home=cli_home).stdout
    assert "ddpm-digits" in listed


def test_generate_alias_and_reproducibility(cli_home: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    genhub("generate", "ddpm-digits", "-n", "4", "--seed", "3", "--steps", "5", "-o", str(first), home=cli_home)
    genhub("alias", "ddpm-digits", "production", "1", home=cli_home)
    genhub("generate", "ddpm-digits@production", "-n", "4", "--seed", "3", "--steps", "5", "-o", str(second), home=cli_home)
    a, b = np.asarray(Image.open(first)), np.asarray(Image.open(second))
    assert a.shape == b.shape and a.std() > 10  # a real picture, not a blank
    assert np.array_equal(a, b)  # same seed, same request: same images
    with Hub.open(home=cli_home) as hub:
        logged = hub.registry.generations(model="ddpm-digits")
    assert len(logged) == 2 and {g.status for g in logged} == {"ok"}


def test_errors_are_one_line_without_traceback(cli_home: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["generate", "no-such-model", "-o", str(tmp_path / "x.png")], "no-such-model"),
        (["generate", "ddpm-digits", "--steps", "5000", "-o", str(tmp_path / "x.png")], "steps"),
        (["generate", "ddpm-digits", "--label", "12", "-o", str(tmp_path / "x.png")], "class_labels"),
        (["train", "no-such-family", "--dataset", "digits"], "no model family"),
        (["train", "ddpm", "--dataset", "digits", "--set", "widht=3"], "widht"),
        (["alias", "ddpm-digits", "prod", "9"], "version"),
    ]
    for args, named in cases:  # in this process (`genhub`'s own entry point): no interpreter start-up per case
        code, out, err = run_cli(capfd, cli_home, *args)
        assert code == 1, (args, err)
        assert "Traceback" not in err
        message = err.strip()
        assert message.startswith("Error:") and "\n" not in message and named in message, (args, err)
    assert not (tmp_path / "x.png").exists()  # nothing half-written


def test_demo_reads_its_request_from_demo_tags() -> None:
    from hub.cli import demo_fields

    tags = ["pretrained", "demo.prompt=a red circle, top left", "demo.class_label=3", "demo.guidance_scale=2.5",
            "demo.unknown=1", "serve.num_cpus=1"]
    assert demo_fields(tags) == {"prompt": "a red circle, top left", "class_label": 3, "guidance_scale": 2.5}



def test_token_create_list_revoke(cli_home: Path, capfd: pytest.CaptureFixture[str]) -> None:
    def run(*args: str) -> tuple[int, str, str]:
        return run_cli(capfd, cli_home, *args)

    code, token, err = run("token", "create", "--scope", "admin", "--name", "ci", "--expires", "30d")
    assert code == 0 and token.strip().startswith("ghk_") and "shown only now" in err
    code, listed, _ = run("token", "list")
    assert "ci" in listed and "admin" in listed and token.strip() not in listed
    with Hub.open(home=cli_home, sync=False) as hub:
        assert [r.name for r in hub.registry.tokens.list()] == ["ci"] and hub.registry.tokens.list()[0].expires_at
    for args, named in [(["token", "create", "--scope", "admin", "--name", "ci"], "exists"),
                        (["token", "create", "--scope", "generate", "--expires", "soon"], "duration"),
                        (["token", "revoke", "nope"], "no token named 'nope'")]:
        code, out, err = run(*args)
        assert code == 1 and named in err and "Traceback" not in err, (args, out, err)
    assert run("token", "revoke", "ci")[0] == 0
    assert "ci" not in run("token", "list")[1]


def test_log_prune_deletes_records_older_than_the_age(cli_home: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy import update

    from hub.registry.orm import Generation, utcnow

    with Hub.open(home=cli_home) as hub:
        version = hub.resolve("ddpm-digits")
        ids = [hub.registry.log_generation(version.id, seed=i, params={}, num_samples=1, duration_s=0.0, status="ok")
               for i in range(3)]
        with hub.registry._session(write=True) as s:  # two records from 40 days ago
            s.execute(update(Generation).where(Generation.id.in_(ids[:2])).values(created_at=utcnow() - timedelta(days=40)))
    code, out, err = run_cli(capfd, cli_home, "log", "prune", "--older-than", "30d")
    assert code == 0 and "pruned 2 generation log record(s) older than 30d" in out, (out, err)
    with Hub.open(home=cli_home, sync=False) as hub:
        assert [g.id for g in hub.registry.generations()] == [ids[2]]
    code, _, err = run_cli(capfd, cli_home, "log", "prune", "--older-than", "soon")
    assert code == 1 and "older_than: 'soon' is not an age" in err and "Traceback" not in err
