"""A content-addressed store of safetensors files.

Each artifact lives at ``<root>/sha256/<first 2 hex>/<digest>.safetensors`` where
``digest`` is the sha256 of the file's bytes, so a file's name proves its content:
``get`` re-hashes before it deserialises and refuses bytes that do not match.

Writes are atomic: bytes go to a temp file in the destination directory, are
fsynced, renamed over the final name and the directory is fsynced. A writer
killed half-way leaves only a ``.tmp-*`` file, never a partial artifact;
``cleanup_temp`` removes those. Nothing here ever unpickles.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from hub.errors import ArtifactCorrupt, InvalidArgument, NotFound

if TYPE_CHECKING:  # torch is imported on first use: the registry and CLI need only digests
    import torch

try:  # POSIX: writers hold an flock on their temp file, so cleanup can tell live from dead
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_DIGEST_RE = re.compile(r"[0-9a-fA-F]{64}")
TEMP_PREFIX = ".tmp-"
SUFFIX = ".safetensors"
# Without flock (Windows) a temp file is only presumed abandoned once it is this old.
_STALE_AFTER_S = 3600.0
_CHUNK = 1 << 20


def check_digest(digest: str) -> str:
    """The digest in canonical (lower-case) form; InvalidArgument if it is not 64 hex chars."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise InvalidArgument(
            "digest", f"{digest!r} is not a sha256 digest; expected 64 hex characters such as the one put() returned"
        )
    return digest.lower()


class ArtifactStore:
    """Safetensors files addressed by the sha256 of their bytes, under ``root``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ArtifactStore({str(self.root)!r})"

    # --- paths -----------------------------------------------------------------

    def path(self, digest: str) -> Path:
        """Where the artifact ``digest`` lives (whether or not it exists)."""
        digest = check_digest(digest)
        return self.root / "sha256" / digest[:2] / f"{digest}{SUFFIX}"

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def digests(self) -> Iterator[str]:
        """Every stored digest (complete files only, not temp files), in no set order."""
        base = self.root / "sha256"
        if not base.is_dir():
            return
        for entry in base.glob(f"??/*{SUFFIX}"):
            name = entry.name[: -len(SUFFIX)]
            if _DIGEST_RE.fullmatch(name):
                yield name

    # --- writing ---------------------------------------------------------------

    def put(self, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
        """Store ``tensors`` (and string ``metadata``) as safetensors; return the digest."""
        from safetensors.torch import save as st_save

        data = _canonical_header(st_save(_prepare(tensors), _check_metadata(metadata)))
        return self._put_bytes(data)

    def put_file(self, path: Path | str) -> str:
        """Import an existing safetensors file byte for byte; return its digest."""
        from safetensors.torch import load as st_load

        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InvalidArgument("path", f"{path} does not exist; pass the path of a .safetensors file") from None
        try:
            st_load(data)  # parse it fully: a truncated or foreign file must not enter the store
        except Exception as exc:  # safetensors raises its own error type and ValueError
            raise InvalidArgument(
                "path", f"{path} is not a valid safetensors file ({exc}); export the weights with safetensors"
            ) from None
        return self._put_bytes(data)

    def _put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        final = self.path(digest)
        # Same bytes, same name: an intact existing file is left alone; a corrupt one is healed.
        if final.is_file() and self.verify(digest):
            return digest
        _write_atomic(final, data)
        return digest

    # --- reading ---------------------------------------------------------------

    def get(self, digest: str) -> dict[str, torch.Tensor]:
        """Load the tensors of ``digest`` after checking the bytes still hash to it."""
        from safetensors.torch import load as st_load

        path = self.path(digest)
        data = self._read(path, digest)
        actual = hashlib.sha256(data).hexdigest()
        if actual != check_digest(digest):
            raise ArtifactCorrupt(
                f"artifact {path} is corrupt: expected sha256 {check_digest(digest)}, the file hashes to {actual}; "
                "delete the file and import the weights again from their source (training run or checkpoint)"
            )
        return st_load(data)

    def metadata(self, digest: str) -> dict[str, str]:
        """The string metadata in the file's header (read without hashing the whole file)."""
        path = self.path(digest)
        if not path.is_file():
            raise self._missing(path, digest)
        try:
            with path.open("rb") as f:  # header: u64 little-endian length, then JSON
                (size,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(min(size, 100_000_000)))
            return dict(header.get("__metadata__") or {})
        except (ValueError, struct.error, AttributeError) as exc:
            raise ArtifactCorrupt(
                f"artifact {path} has an unreadable safetensors header ({exc}); "
                "delete the file and import the weights again"
            ) from None

    def verify(self, digest: str) -> bool:
        """True if the artifact exists and its bytes hash to ``digest``; False if missing or altered."""
        path = self.path(digest)
        h = hashlib.sha256()
        try:
            with path.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        except FileNotFoundError:
            return False
        return h.hexdigest() == check_digest(digest)

    def _read(self, path: Path, digest: str) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise self._missing(path, digest) from None

    def _missing(self, path: Path, digest: str) -> NotFound:
        return NotFound(
            f"artifact {check_digest(digest)} is not in the store (no file {path}); "
            "import the weights again, or point GENHUB_ARTIFACTS at the store that holds them"
        )

    # --- maintenance -----------------------------------------------------------

    def cleanup_temp(self) -> list[Path]:
        """Remove temp files abandoned by killed writers; return what was removed.

        On POSIX a live writer holds an flock on its temp file, so only dead
        writers' files are removed, however recent. Elsewhere a temp file is
        presumed abandoned once it is an hour old.
        """
        removed: list[Path] = []
        base = self.root / "sha256"
        if not base.is_dir():
            return removed
        for tmp in base.glob(f"??/{TEMP_PREFIX}*"):
            if _remove_if_abandoned(tmp):
                removed.append(tmp)
        return removed


# --- helpers -------------------------------------------------------------------


def _prepare(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors with no two sharing storage (safetensors refuses both)."""
    import torch

    out: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise InvalidArgument(
                "tensors", f"entry {name!r} is {type(tensor).__name__}; expected a str name mapped to a torch.Tensor"
            )
        t = tensor.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        t = t.cpu()
        if not t.is_contiguous():
            t = t.contiguous()  # a copy, with storage of its own
        ptr = t.untyped_storage().data_ptr()
        if ptr in storages or t.numel() == 0:
            t = t.clone()
            ptr = t.untyped_storage().data_ptr()
        storages.add(ptr)
        out[name] = t
    return out


def _check_metadata(metadata: dict[str, str] | None) -> dict[str, str] | None:
    if metadata is None:
        return None
    bad = {k: v for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)}
    if bad:
        raise InvalidArgument("metadata", f"keys and values must be str, got {bad!r}; convert them with str()/json")
    return dict(metadata)


def _canonical_header(data: bytes) -> bytes:
    """Sort the ``__metadata__`` keys so equal content always gives equal bytes.

    safetensors writes metadata in hash-map order, which differs between
    processes; without this the same weights would get a new digest each run.
    """
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    if "__metadata__" not in header:
        return data
    ordered = {"__metadata__": dict(sorted(header.pop("__metadata__").items())), **header}
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data section 8-byte aligned, as safetensors does
    return struct.pack("<Q", len(text)) + text + data[8 + n :]


def _write_atomic(final: Path, data: bytes) -> None:
    directory = final.parent
    directory.mkdir(parents=True, exist_ok=True)
    f, tmp = _open_locked_temp(directory)
    try:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        if os.name == "nt":  # pragma: no cover - Windows cannot rename an open file
            f.close()
        os.replace(tmp, final)
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise
    f.close()  # only now drop the lock: cleanup_temp must not take the file before the rename
    _fsync_dir(directory)


def _open_locked_temp(directory: Path) -> tuple[BinaryIO, Path]:
    while True:
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".part", dir=directory)
        f = os.fdopen(fd, "wb")
        if fcntl is None:  # pragma: no cover
            return f, Path(name)
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            # cleanup_temp may have removed the file between mkstemp and flock; then take another.
            if os.stat(name).st_ino == os.fstat(f.fileno()).st_ino:
                return f, Path(name)
        except FileNotFoundError:
            pass
        f.close()


def _remove_if_abandoned(tmp: Path) -> bool:
    try:
        if fcntl is None:  # pragma: no cover
            if time.time() - tmp.stat().st_mtime < _STALE_AFTER_S:
                return False
            tmp.unlink()
            return True
        with tmp.open("rb") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a live writer holds it
            tmp.unlink()  # still holding the lock, so no writer can adopt it meanwhile
            return True
    except FileNotFoundError:
        return False  # renamed or removed by someone else meanwhile


def _fsync_dir(directory: Path) -> None:
    if os.name == "nt":  # pragma: no cover - directories cannot be opened for fsync on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
