"""Autoscaling under a bounded load, and a replica killed in the middle of one."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import ray

from hub import errors
from hub.client import Client
from hub.ray.constants import APP_NAME, deployment_name
from hub.ray.runner import replicas, unsettled
from tests.ray.conftest import KILL_MAX_ONGOING, KILL_MODEL, SCALE_MODEL
from tests.server.harness import wait_for

CALLERS = 16
SLOW = {"step_sleep_s": 0.05}  # about 0.25 s per sampling call: requests stay in flight


class Load:
    """``CALLERS`` threads calling ``call`` back to back until stopped; records outcomes."""

    def __init__(self, address: str, call: Callable[[Client], Any]) -> None:
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[BaseException] = []
        self._lock = threading.Lock()
        self._client = Client(address, timeout=60)  # a deadline on every call: no caller can hang
        self._pool = ThreadPoolExecutor(CALLERS)
        self._futures = [self._pool.submit(self._run, call) for _ in range(CALLERS)]

    def _run(self, call: Callable[[Client], Any]) -> None:
        while not self.stop.is_set():
            try:
                call(self._client)
                with self._lock:
                    self.ok += 1
            except errors.GenhubError as exc:
                with self._lock:
                    self.failures.append(exc)

    def finish(self, timeout: float = 90) -> None:
        self.stop.set()
        for future in self._futures:
            future.result(timeout=timeout)  # raises TimeoutError if a caller hung
        self._pool.shutdown()
        self._client.close()


def wait_replicas(deployment: str, predicate: Callable[[int], bool], timeout: float, timeline: list[tuple[float, int]],
                  t0: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        count = replicas(deployment)
        timeline.append((round(time.monotonic() - t0, 1), count))
        if predicate(count) or time.monotonic() > deadline:
            return count
        time.sleep(0.5)


def test_a_model_scales_up_under_load_and_back_down_after(ray_app: str) -> None:
    deployment = deployment_name(SCALE_MODEL)
    timeline: list[tuple[float, int]] = []
    t0 = time.monotonic()
    assert wait_replicas(deployment, lambda n: n == 1, 30, timeline, t0) == 1
    load = Load(ray_app, lambda c: c.generate(SCALE_MODEL, seed=1, steps=5, params=SLOW))
    try:
        peak = wait_replicas(deployment, lambda n: n >= 3, 90, timeline, t0)  # slow when the machine is loaded
    finally:
        load.finish()
    assert peak >= 3, f"no scale-up to 3 replicas under {CALLERS} callers; replicas over time: {timeline}"
    assert load.ok > 0 and not load.failures, load.failures[:3]
    assert wait_replicas(deployment, lambda n: n == 1, 60, timeline, t0) == 1, f"no scale-down: {timeline}"


def replica_actor_names(deployment: str) -> list[str]:
    prefix = f"SERVE_REPLICA::{APP_NAME}#{deployment}#"
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix))


def test_a_killed_replica_costs_only_its_requests_each_with_a_clear_status(ray_app: str) -> None:
    deployment = deployment_name(KILL_MODEL)
    names = replica_actor_names(deployment)
    assert len(names) == 2, names
    load = Load(ray_app, lambda c: c.generate(KILL_MODEL, seed=2, steps=10, params=SLOW))
    try:
        # Both replicas busy: more requests answered than one replica holds at once (not "after 3 s": a loaded
        # machine may not have answered any by then).
        wait_for(lambda: load.ok > KILL_MAX_ONGOING, timeout=90, what="the load to reach both replicas")
        before = load.ok
        ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
        # Serve notices (the deployment is not at rest until a replacement runs: seconds, it starts a process)
        wait_for(lambda: deployment in unsettled(), timeout=60, what="the kill to show in unsettled()", every=0.2)
        # The survivor serves on: more answers than there are callers, so some were sent after the kill.
        wait_for(lambda: load.ok > before + CALLERS, timeout=90, what="answers from the surviving replica")
    finally:
        load.finish()  # every caller returns (TimeoutError here would mean one hung)
    # Usually the killed replica held requests (they fail); it may also have been between batches, holding none.
    assert len(load.failures) <= KILL_MAX_ONGOING, [str(f) for f in load.failures]
    for failure in load.failures:
        assert isinstance(failure, errors.Unavailable) and "retry" in str(failure), repr(failure)
    # Serve replaces the killed replica: two running again, neither of them the killed one. Waiting here also keeps
    # the replacement's start (a process of some 360 MiB) out of whatever a later test measures.
    wait_for(lambda: len(set(replica_actor_names(deployment)) - {names[0]}) == 2 and replicas(deployment) == 2
             and not unsettled(), timeout=120, what="Serve to replace the killed replica", every=0.5)
    with Client(ray_app, timeout=60) as client:  # and the model still serves afterwards
        assert client.generate(KILL_MODEL, seed=3, steps=2).samples.shape == (1, 1, 8, 8)
