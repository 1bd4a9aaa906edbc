"""The content-addressed artifact store: round trips, corruption, atomic writes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hub.artifacts import TEMP_PREFIX, ArtifactStore
from hub.errors import ArtifactCorrupt, InvalidArgument, NotFound


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def _tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(4, 2, 3, 3, generator=g),  # [out, in, kh, kw]
        "conv.bias": torch.randn(4, generator=g).half(),
        "steps": torch.arange(5, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "bf16": torch.randn(3, generator=g).to(torch.bfloat16),
    }


def test_round_trip(store: ArtifactStore) -> None:
    tensors = _tensors()
    digest = store.put(tensors, {"family": "ddpm", "note": "x"})
    path = store.path(digest)
    assert path == store.root / "sha256" / digest[:2] / f"{digest}.safetensors"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    loaded = store.get(digest)
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype
        assert torch.equal(loaded[name], tensor)
    assert store.metadata(digest) == {"family": "ddpm", "note": "x"}
    assert store.exists(digest) and store.verify(digest)
    assert list(store.digests()) == [digest]


def test_same_content_same_digest_one_file(store: ArtifactStore) -> None:
    # safetensors writes metadata in hash-map order; the store must canonicalise it.
    metadata = {f"key{i}": str(i) for i in range(12)}
    digests = {store.put(_tensors(), dict(reversed(list(metadata.items())))) for _ in range(5)}
    digests.add(store.put(_tensors(), metadata))
    assert len(digests) == 1
    assert len(list((store.root / "sha256").rglob("*"))) == 2  # one directory, one file
    assert store.put(_tensors(seed=1), metadata) not in digests


def test_shared_and_non_contiguous_tensors(store: ArtifactStore) -> None:
    base = torch.arange(12.0).reshape(3, 4)
    tensors = {"a": base, "tied": base, "t": base.t(), "row": base[1], "empty": torch.zeros(0)}
    loaded = store.get(store.put(tensors))
    for name, tensor in tensors.items():
        assert torch.equal(loaded[name], tensor), name
    assert torch.equal(base, torch.arange(12.0).reshape(3, 4))  # inputs untouched


def test_put_file_keeps_bytes(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model.safetensors"
    save_file(_tensors(), str(source), metadata={"a": "1"})
    digest = store.put_file(source)
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()
    assert store.path(digest).read_bytes() == source.read_bytes()
    assert store.put_file(source) == digest
    assert torch.equal(store.get(digest)["steps"], torch.arange(5))


def test_put_file_rejects_bad_input(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        store.put_file(tmp_path / "missing.safetensors")
    source = tmp_path / "model.safetensors"
    save_file(_tensors(), str(source))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(source.read_bytes()[:-10])
    with pytest.raises(InvalidArgument, match="not a valid safetensors file"):
        store.put_file(truncated)
    pickle_like = tmp_path / "model.pt"
    torch.save(_tensors(), pickle_like)
    with pytest.raises(InvalidArgument, match="not a valid safetensors file"):
        store.put_file(pickle_like)
    assert list(store.digests()) == []


def test_tampered_file_is_refused(store: ArtifactStore) -> None:
    digest = store.put(_tensors())
    path = store.path(digest)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # flip one bit of the last tensor's data
    path.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(ArtifactCorrupt) as info:
        store.get(digest)
    message = str(info.value)
    assert str(path) in message and digest in message and actual in message
    assert "import the weights again" in message
    assert not store.verify(digest)
    # Putting the same content again heals the file.
    assert store.put(_tensors()) == digest
    assert store.verify(digest)


def test_bad_and_missing_digests(store: ArtifactStore) -> None:
    for bad in ["", "abc", "g" * 64, "a" * 63, "a" * 65, "../" + "a" * 61]:
        with pytest.raises(InvalidArgument, match="64 hex characters"):
            store.get(bad)
        with pytest.raises(InvalidArgument):
            store.exists(bad)
    missing = "0" * 64
    assert not store.exists(missing) and not store.verify(missing)
    with pytest.raises(NotFound, match=missing):
        store.get(missing)
    with pytest.raises(NotFound, match=missing):
        store.metadata(missing)
    digest = store.put(_tensors())
    assert store.exists(digest.upper())


def test_bad_tensors_and_metadata(store: ArtifactStore) -> None:
    with pytest.raises(InvalidArgument, match="torch.Tensor"):
        store.put({"a": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument, match="must be str"):
        store.put({"a": torch.zeros(1)}, {"n": 1})  # type: ignore[dict-item]


_WRITER = textwrap.dedent(
    """
    import os, sys, time, torch
    import hub.artifacts as artifacts
    store = artifacts.ArtifactStore(sys.argv[1])
    mode, stall_after = sys.argv[2], 3
    real_fsync, done = os.fsync, 0
    def fsync(fd):
        # "stall": hang inside the 4th write, after the data is written, before the rename.
        if mode == "stall" and done == stall_after:
            print("STALL", flush=True)
            time.sleep(600)
        real_fsync(fd)
    artifacts.os.fsync = fsync
    for i in range(1000):
        big = {"w": torch.full((2 << 20,), float(i))}  # 8 MiB
        print("DONE", store.put(big, {"i": str(i)}), flush=True)
        done += 1
    """
)


def _start_writer(root: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(root), mode], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )


def _check_store_after_kill(store: ArtifactStore, completed: set[str]) -> None:
    finals = {p.name[: -len(".safetensors")] for p in (store.root / "sha256").glob("??/*.safetensors")}
    assert completed <= finals  # a digest reported done is durable
    for digest in finals:  # and every complete-looking file is complete
        assert store.verify(digest), digest
        store.get(digest)
    store.cleanup_temp()
    leftovers = [p for p in (store.root / "sha256").rglob("*") if p.is_file() and not p.name.endswith(".safetensors")]
    assert leftovers == []


posix_only = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and flock are POSIX")


@posix_only
def test_killed_writer_leaves_no_partial_artifact(store: ArtifactStore) -> None:
    writer = _start_writer(store.root, "stall")
    completed: set[str] = set()
    try:
        assert writer.stdout is not None
        for line in writer.stdout:
            if line.startswith("STALL"):
                break
            completed.add(line.split()[1])
        temps = list((store.root / "sha256").glob(f"??/{TEMP_PREFIX}*"))
        assert len(temps) == 1 and temps[0].stat().st_size > 8 << 20
        assert store.cleanup_temp() == []  # the writer is alive and holds its temp file
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    finally:
        writer.kill()
    assert len(completed) == 3
    assert store.cleanup_temp() == temps
    _check_store_after_kill(store, completed)
    assert set(store.digests()) == completed


@posix_only
def test_writer_killed_mid_write(store: ArtifactStore) -> None:
    writer = _start_writer(store.root, "run")
    completed: set[str] = set()
    try:
        assert writer.stdout is not None
        for line in writer.stdout:
            completed.add(line.split()[1])
            if len(completed) == 2:
                break
        deadline = time.monotonic() + 10
        # Kill as soon as the next temp file appears: most likely while its bytes are still being written.
        while not list((store.root / "sha256").glob(f"??/{TEMP_PREFIX}*")) and time.monotonic() < deadline:
            time.sleep(0.001)
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    finally:
        writer.kill()
    _check_store_after_kill(store, completed)
