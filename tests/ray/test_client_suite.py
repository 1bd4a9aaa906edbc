"""The shared client test suite (tests/server), unchanged, against the Ray Serve backend.

Every test of tests/server that talks to a server only through the client runs
here against Serve's gRPC ingress; the ``client`` and ``tiny`` fixtures come
from tests/ray/conftest.py. Tests that read the local server's queue internals
(``worker_state``) or start servers of their own stay with the local backend.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.server.harness import IMAGE_MODEL, REPO
from tests.server.test_generation import (  # noqa: F401  (collected here, run against Ray)
    test_an_unset_seed_is_chosen_by_the_server_and_reproduces,
    test_concurrent_clients_all_get_their_own_images,
    test_generate_returns_pngs_of_the_resolved_version_and_logs_it,
    test_images_match_in_process_generation_for_the_same_seed,
    test_invalid_fields_answer_invalid_argument_naming_field_and_limit,
    test_invalid_preview_every_and_empty_param_values_are_rejected,
    test_point_models_return_raw_tensors_and_refuse_png,
    test_stream_reports_every_step_with_low_resolution_previews_then_the_result,
    test_typed_params_reach_the_family,
    test_unknown_models_and_samplers_answer_not_found,
)
from tests.server.test_registry_service import (  # noqa: F401
    test_get_model_has_versions_metrics_card_and_training,
    test_list_models_pages_through_every_model,
    test_list_plugins_shows_status_and_contributions,
    test_missing_required_fields_are_invalid,
    test_page_size_past_the_limit_is_invalid,
    test_set_alias_moves_what_generation_resolves,
    test_unknown_models_are_not_found,
)


def test_node_client_works_unchanged_through_the_serve_proxy(ray_app: str) -> None:
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("the Node client needs node 18+ on PATH and `npm ci` in the repo")
    done = subprocess.run([node, str(REPO / "tests" / "node" / "client.mjs"), ray_app, IMAGE_MODEL], cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # a bound, not a speed
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert IMAGE_MODEL in seen["models"] and seen["generate"]["images"] == 2 and seen["generate"]["all_png"]
    assert int(seen["generate"]["generation_id"]) > 0
    stream = seen["stream"]  # a reader slower than sampling gets the newest progress, older events coalesced
    assert stream["steps"] == sorted(set(stream["steps"])) and stream["steps"][-1] == 3
    assert stream["previews"] == len(stream["steps"]) and stream["result_images"] == 1 and stream["result_png"]
    assert seen["invalid"]["code"] == "INVALID_ARGUMENT" and "num_samples" in seen["invalid"]["details"]

