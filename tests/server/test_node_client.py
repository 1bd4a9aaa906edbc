"""A client in another language: Node (@grpc/grpc-js + @grpc/proto-loader) built from protos/ at run time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from hub import auth
from tests.server.harness import IMAGE_MODEL, REPO, ServeProcess, TinyHub

SCRIPT = REPO / "tests" / "node" / "client.mjs"


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not on PATH: install Node.js 18+ to run the Node client test")
    for package in ("@grpc/grpc-js", "@grpc/proto-loader"):
        if not (REPO / "node_modules" / package).is_dir():
            pytest.fail(f"node_modules/{package} is missing: run `npm ci` in {REPO}")
    return found


def test_node_client_lists_generates_and_streams(tiny: TinyHub, serve_process: ServeProcess) -> None:
    token = auth.read_tokens_file(auth.tokens_path(tiny.home))[auth.GENERATE]
    done = subprocess.run([node(), str(SCRIPT), serve_process.address, IMAGE_MODEL], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env={**os.environ, auth.TOKEN_ENV: token})  # a bound
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert IMAGE_MODEL in seen["models"]
    generated = seen["generate"]
    assert generated["images"] == 2 and generated["all_png"] and generated["seed"] == "5"
    assert generated["model_version"]["name"] == IMAGE_MODEL and len(generated["model_version"]["digest"]) == 64
    assert int(generated["generation_id"]) > 0
    stream = seen["stream"]  # a reader slower than sampling gets the newest progress, older events coalesced
    steps = stream["steps"]
    assert steps == sorted(set(steps)) and steps[-1] == 3 and stream["previews"] == len(steps)
    assert stream["result_images"] == 1 and stream["result_png"] is True
    assert seen["invalid"]["code"] == "INVALID_ARGUMENT" and "num_samples" in seen["invalid"]["details"]
    assert seen["anonymous"] == "UNAUTHENTICATED"
