"""`genhub deploy render`: a Serve config that Ray's own schema accepts, settings from registry tags and overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from ray.serve.schema import ServeDeploySchema

from hub.core import Hub
from hub.errors import InvalidArgument
from hub.ray.app import build_app
from hub.ray.constants import SERVE_ENV, SERVICER_FUNCTIONS
from hub.ray.settings import Overrides, ServeSettings, from_tags

REPO = Path(__file__).resolve().parents[2]


def add_model(hub: Hub, name: str, tags: list[str]) -> None:
    digest = hub.artifacts.put({"w": torch.zeros(2)}, metadata={"family": "tiny"})
    hub.registry.ensure_model(name, "tiny", "tinyfamily")
    hub.registry.add_version(name, config={}, artifact_digest=digest, dataset="digits", tags=tags)


def test_render_writes_a_config_that_rays_schema_accepts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Hub.open(home=home) as hub:
        add_model(hub, "gpu-model", ["serve.num_gpus=0.5", "serve.max_replicas=4", "serve.target_ongoing_requests=3",
                                     "serve.max_queued_requests=8"])
        add_model(hub, "cpu-model", ["pretrained"])
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(yaml.safe_dump({"default": {"num_cpus": 2}, "models": {"cpu-model": {"max_replicas": 3}}}))
    out = tmp_path / "serve-config.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "hub", "--home", str(home), "deploy", "render", "-o", str(out), "--overrides", str(overrides),
         "--set", "gpu-model.upscale_delay_s=5", "--cluster-home", "/mnt/genhub", "--grpc-port", "9100"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "GENHUB_DEVICE": "cpu"}, timeout=300,  # a bound
    )
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(out.read_text())
    schema = ServeDeploySchema.model_validate(config)  # Ray's own schema for `serve deploy` and KubeRay
    assert schema.grpc_options.port == 9100 and schema.grpc_options.grpc_servicer_functions == SERVICER_FUNCTIONS
    app = config["applications"][0]
    assert app["import_path"] == "hub.ray.app:build_app" and app["args"]["home"] == "/mnt/genhub"
    assert app["runtime_env"]["env_vars"] == {"OMP_NUM_THREADS": "1", **SERVE_ENV}  # one event loop per replica
    deployments = {d["name"]: d for d in app["deployments"]}
    gpu = deployments["model-gpu-model"]
    assert gpu["ray_actor_options"] == {"num_cpus": 2.0, "num_gpus": 0.5}  # tag, then the file's default
    assert gpu["autoscaling_config"]["max_replicas"] == 4 and gpu["autoscaling_config"]["upscale_delay_s"] == 5.0
    assert gpu["autoscaling_config"]["target_ongoing_requests"] == 3.0
    assert deployments["model-cpu-model"]["autoscaling_config"]["max_replicas"] == 3
    assert gpu["max_queued_requests"] == 8 and deployments["model-cpu-model"]["max_queued_requests"] == 64
    assert build_app(app["args"]) is not None  # the builder Serve imports accepts the rendered args


def test_settings_precedence_and_errors() -> None:
    tagged = from_tags(["pretrained", "serve.num_gpus=0.25", "serve.initial_replicas=2", "serve.max_replicas=3"])
    assert (tagged.num_gpus, tagged.initial_replicas, tagged.max_replicas) == (0.25, 2, 3)
    overrides = Overrides.load(assignments=["*.num_cpus=0.5", "m.num_cpus=4"])
    assert overrides.apply("m", tagged).num_cpus == 4.0 and overrides.apply("other", tagged).num_cpus == 0.5
    assert ServeSettings(min_replicas=2, max_replicas=5).autoscaling_config()["initial_replicas"] == 2
    with pytest.raises(InvalidArgument, match="unknown serving setting 'num_gpu'.*num_gpus"):
        from_tags(["serve.num_gpu=1"])
    with pytest.raises(InvalidArgument, match="min_replicas: must be between 0 and max_replicas"):
        ServeSettings(min_replicas=3, max_replicas=2)
    assert Overrides.load(assignments=["*.max_queued_requests=-1"]).apply("m", tagged).max_queued_requests == -1  # no limit
    with pytest.raises(InvalidArgument, match="max_queued_requests: must be >= 1, or -1 for no limit, got 0"):
        from_tags(["serve.max_queued_requests=0"])
    with pytest.raises(InvalidArgument, match="max_queued_requests must be a whole number, got '1.5'"):
        from_tags(["serve.max_queued_requests=1.5"])
    with pytest.raises(InvalidArgument, match="expected MODEL.KEY=VALUE"):
        Overrides.load(assignments=["num_cpus=1"])


def test_the_kuberay_manifest_embeds_a_valid_serve_config() -> None:
    documents = list(yaml.safe_load_all((REPO / "deploy" / "rayservice.yaml").read_text()))
    service = next(d for d in documents if d["kind"] == "RayService")
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(serve_config)
    app = serve_config["applications"][0]
    assert app["import_path"] == "hub.ray.app:build_app"
    assert SERVE_ENV.items() <= app["runtime_env"]["env_vars"].items()  # replicas: one event loop each
    for group in [service["spec"]["rayClusterConfig"]["headGroupSpec"], *service["spec"]["rayClusterConfig"]["workerGroupSpecs"]]:
        for container in group["template"]["spec"]["containers"]:  # every node's proxy routes on its own loop too
            assert SERVE_ENV.items() <= {e["name"]: e.get("value") for e in container.get("env", [])}.items()
    assert serve_config["grpc_options"]["grpc_servicer_functions"] == SERVICER_FUNCTIONS
    workers = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert any(c["resources"]["limits"].get("nvidia.com/gpu") for g in workers for c in g["template"]["spec"]["containers"])
    assert build_app(app["args"]) is not None
    example = Overrides.load(REPO / "deploy" / "overrides.example.yaml")
    assert example.apply("ddpm-digits", ServeSettings()).num_gpus == 0.25


def test_a_local_instance_shrinks_num_cpus_so_every_model_gets_a_replica() -> None:
    from hub.ray.settings import fit_to_cpus

    many = {f"m{i}": ServeSettings() for i in range(14)}  # 1 CPU each: 14 CPUs asked
    fitted, factor = fit_to_cpus(many, cpus=2.0)
    assert factor == pytest.approx(1.5 / 14)
    assert sum(s.num_cpus for s in fitted.values()) == pytest.approx(1.5)  # 0.5 kept for the ingress
    few = {"a": ServeSettings(num_cpus=0.5, min_replicas=1, max_replicas=4)}
    assert fit_to_cpus(few, cpus=2.0) == (few, 1.0)  # already fits: untouched


def test_the_manifests_expose_only_grpc_behind_tls_and_never_the_dashboard() -> None:
    documents = [d for path in ("rayservice.yaml", "tls-ingress.yaml")
                 for d in yaml.safe_load_all((REPO / "deploy" / path).read_text())]
    services = [d for d in documents if d["kind"] == "Service"]
    assert [p["targetPort"] for s in services for p in s["spec"]["ports"]] == [8443]  # the TLS terminator only
    policy = next(d for d in documents if d["kind"] == "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"ray.io/cluster": "genhub"}
    for rule in policy["spec"]["ingress"]:
        ports = {p["port"] for p in rule.get("ports", [])}
        selectors = [f["podSelector"]["matchLabels"] for f in rule["from"]]
        if 8265 in ports:  # the dashboard: the KubeRay operator only
            assert selectors == [{"app.kubernetes.io/name": "kuberay-operator"}]
        else:
            assert ports in ({9000}, set()) and (ports or selectors == [{"ray.io/cluster": "genhub"}])
    envoy = yaml.safe_load(next(d for d in documents if d["kind"] == "ConfigMap")["data"]["envoy.yaml"])
    listener = envoy["static_resources"]["listeners"][0]
    assert listener["filter_chains"][0]["transport_socket"]["name"] == "envoy.transport_sockets.tls"
    upstream = envoy["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert upstream["endpoint"]["address"]["socket_address"]["port_value"] == 9000
