"""`genhub serve --backend ray` on a real Ray cluster of two nodes (a head and a worker, both on 127.0.0.1):
a SQLite registry is refused before Serve starts anything on the cluster, a PostgreSQL one serves (with the
command's --no-generation-log reaching the replicas on the cluster)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hub.client import Client
from tests.databases import PostgresServer
from tests.server.harness import IMAGE_MODEL, REPO, open_tiny_hub, write_entry_point

pytestmark = pytest.mark.slow  # a cluster of its own and two CLI runs: about a minute on a quiet machine
TIMEOUT_S = 300


def test_two_nodes_refuse_a_sqlite_registry_and_serve_a_postgresql_one(tmp_path: Path, postgres_server: PostgresServer,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the nodes, started from this process, and the CLI's driver
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keeps the nodes on 127.0.0.1 (NOTES.md)
    entry_points = write_entry_point(tmp_path / "entry-points")  # the nodes' workers find the tiny test family
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(entry_points), str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("GENHUB_DEVICE", "cpu")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "node_ip_address": "127.0.0.1"})
    try:
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        home = tmp_path / "home"
        genhub = [sys.executable, "-m", "hub", "--no-bundled", "--home", str(home)]
        serve = ["serve", "--backend", "ray", "--ray-address", cluster.address, "--address", "127.0.0.1:0"]
        env = dict(os.environ)

        refused = subprocess.run([*genhub, *serve], capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
        assert "is a SQLite file, but this Ray cluster has 2 nodes" in refused.stderr
        assert "Point --db or GENHUB_DB at PostgreSQL, e.g. postgresql+psycopg://" in refused.stderr
        assert "Started Serve" not in refused.stderr  # refused before Serve started anything on the cluster

        url = postgres_server.create_database()
        open_tiny_hub(home, bundled=False, db_url=url).hub.close()  # two tiny models (their weights in home)
        # the replicas get --no-generation-log through their serving settings (as --log-retention would)
        process = subprocess.Popen([*genhub, "--db", url, *serve, "--no-generation-log", "--set", "*.num_cpus=0.2"],
                                   stderr=subprocess.PIPE, text=True, env=env)
        watchdog = threading.Timer(TIMEOUT_S, process.kill)
        watchdog.start()
        try:
            assert process.stderr is not None
            lines = []
            for line in process.stderr:  # until it serves (or dies: the loop ends)
                lines.append(line)
                if line.startswith("genhub serving on"):
                    break
            assert lines and lines[-1].startswith("genhub serving on"), "".join(lines)
            address = lines[-1].split()[3]  # "genhub serving on HOST:PORT (Ray Serve, ...)"
            with grpc.insecure_channel(address) as channel:  # the cluster's proxy answers for the app
                check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=60)
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            with Client(address, timeout=120, home=home) as client:  # the token the first start wrote to home
                assert client.generate(IMAGE_MODEL, seed=0, steps=2).generation_id == 0  # not logged
            process.send_signal(signal.SIGTERM)
            rest = process.stderr.read()
            assert process.wait(timeout=TIMEOUT_S) == 0, "".join(lines) + rest
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
    finally:
        cluster.shutdown()
