"""The public contract: protos lint clean, stay compatible, and the Python stubs are current."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hub.inference import grpc_predict_v2_pb2
from hub.v1 import generation_pb2, registry_pb2, types_pb2

REPO = Path(__file__).resolve().parents[2]
BUF = REPO / "node_modules" / ".bin" / "buf"


def load_gen_protos():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_protos", REPO / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def buf() -> str:
    if not BUF.exists():
        pytest.fail(f"{BUF} is missing: run `npm ci` in {REPO} (installs @bufbuild/buf from package-lock.json)")
    return str(BUF)


def test_committed_stubs_are_what_the_protos_generate() -> None:
    gen = load_gen_protos()
    with tempfile.TemporaryDirectory() as tmp:
        pairs = gen.generate(Path(tmp))
        problems = [p for generated, committed in pairs for p in gen.differences(generated, committed)]
    assert {committed.relative_to(REPO).as_posix() for _, committed in pairs} == {"hub/v1", "hub/inference"}
    assert not problems, f"stubs are stale ({'; '.join(problems)}); run: python scripts/gen_protos.py"


def test_the_open_inference_protocol_stubs_load_beside_tritonclient() -> None:
    """tritonclient registers the same inference.* names in protobuf's default pool: both must import in one process."""
    code = ("import tritonclient.grpc.service_pb2 as triton; from hub.inference import grpc_predict_v2_pb2 as ours; "
            "raw = ours.ModelInferRequest(model_name='m', inputs=[{'name': 'seed', 'datatype': 'UINT64', 'shape': [1]}])"
            ".SerializeToString(); assert triton.ModelInferRequest.FromString(raw).inputs[0].name == 'seed'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_open_inference_protocol_matches_tritonclients_copy_field_for_field() -> None:
    """Wire compatibility: every message and field we declare exists in Triton's grpc_service.proto with the same
    number, type and label (Triton's is a superset of KServe's V2 protocol), and the service's RPCs have its types."""
    import tritonclient.grpc.service_pb2 as triton

    from hub.inference import grpc_predict_v2_pb2 as ours

    def check(mine, theirs) -> None:  # type: ignore[no-untyped-def]
        assert mine.full_name == theirs.full_name
        for field in mine.fields:
            other = theirs.fields_by_name.get(field.name)
            assert other is not None, f"{mine.full_name}.{field.name} is not in Triton's proto"
            assert (field.number, field.type, field.is_repeated) == (other.number, other.type, other.is_repeated), field.full_name
            if field.message_type is not None:
                check(field.message_type, other.message_type)

    for name, message in ours.DESCRIPTOR.message_types_by_name.items():
        check(message, triton.DESCRIPTOR.message_types_by_name[name])
    service = ours.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = triton.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for method in service.methods:
        other = theirs.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (other.input_type.full_name, other.output_type.full_name)


def test_the_check_script_passes_from_any_directory(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--check"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_buf_lint_is_clean() -> None:
    done = subprocess.run([buf(), "lint"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, f"buf lint:\n{done.stdout}{done.stderr}"


def first_commit_with_protos() -> str | None:
    done = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--", "protos/hub/v1/generation.proto"],
                          cwd=REPO, capture_output=True, text=True)
    commits = done.stdout.split() if done.returncode == 0 else []
    return commits[-1] if commits else None


def test_buf_breaking_against_the_first_published_version() -> None:
    """hub.v1 is public: every later change must be compatible with the version that first shipped."""
    base = first_commit_with_protos()
    assert base is not None, ("no commit adds protos/hub/v1/generation.proto: run the tests in a git clone with its "
                              "history (buf breaking compares with the first published hub.v1)")
    done = subprocess.run([buf(), "breaking", "--against", f".git#ref={base}"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, f"buf breaking against {base[:12]}:\n{done.stdout}{done.stderr}"


def test_the_request_limits_in_comments_match_the_server() -> None:
    from hub.server import convert

    proto = (REPO / "protos" / "hub" / "v1" / "generation.proto").read_text()
    for text in (f"1-{convert.MAX_NUM_SAMPLES}", f"1-{convert.MAX_STEPS}", f"0-{convert.MAX_GUIDANCE:g}",
                 f"at most {convert.MAX_PROMPT_CHARS} characters", f"at most {convert.MAX_PARAMS}",
                 f"at most {convert.PREVIEW_MAX_SIDE} pixels", f"at most {convert.MAX_PREVIEW_EVERY}",
                 f"at most {convert.MAX_TASK_CHARS} characters"):
        assert text in proto, f"generation.proto should quote the limit {text!r}"


def test_enums_start_unspecified_and_there_is_one_request_and_response_per_rpc() -> None:
    for enum in (types_pb2.ImageFormat, types_pb2.DataType, registry_pb2.PluginStatus):
        assert enum.Name(0).endswith("_UNSPECIFIED")
    for module in (generation_pb2, registry_pb2, grpc_predict_v2_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert method.input_type.name == f"{method.name}Request"
                assert method.output_type.name == f"{method.name}Response"
