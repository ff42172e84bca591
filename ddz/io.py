"""Files that are never half-written and never used unverified.

Atomic writes (temp file, fsync, rename), the sha256 check every load goes through, and the one
tensor-file format that zoo snapshots, training checkpoints, synthetic sets and distillation
checkpoints share: safetensors whose str -> str header carries

    ddz.format          the kind and its version: ddz.snapshot/1, ddz.checkpoint/1, ddz.synset/1, ...
    ddz.content_sha256  sha256 over the tensors alone (name, dtype, shape, bytes): checked on every read
    ...                 the record's own keys, encoded by the record (e.g. ddz.zoo.records.SnapshotMeta)

with the header's keys in sorted order, so the same tensors and metadata give the same bytes.
A record that keeps a file's sha256 (a manifest, a registry entry, a sidecar) passes it to
`read_tensors`, which checks the file's bytes before parsing them. Nothing is ever unpickled.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ddz.errors import DiskFullError, IntegrityError

if TYPE_CHECKING:  # listing the zoo and `ddz --help` import no torch; reading and writing tensors do
    import torch

FORMAT_KEY = "ddz.format"
CONTENT_KEY = "ddz.content_sha256"
# Tags written before the scheme was one: read as their current names.
LEGACY_FORMATS = {"ddz-synset-1": "ddz.synset/1", "ddz-distill-checkpoint-1": "ddz.distill-checkpoint/1"}
REDO = "delete it and re-train or re-pull it"
MAX_HEADER = 100_000_000


# --- hashing and verification --------------------------------------------------------------------


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_sha256(path: str | Path, actual: str, expected: str | None, remedy: str = REDO) -> None:
    """Refuse a file whose sha256 is not the recorded one (no record: nothing to check)."""
    if expected is not None and actual != expected:
        raise IntegrityError(
            f"{path} fails its integrity check: sha256 {actual} but the record says {expected}; "
            f"the file was changed or corrupted, {remedy}",
            expected=expected, actual=actual,
        )


def read_verified(path: str | Path, expected_sha256: str | None, remedy: str = REDO) -> tuple[bytes, str]:
    """The file's bytes and sha256, after checking them against `expected_sha256` (when given)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        recorded = f" (its recorded sha256 is {expected_sha256})" if expected_sha256 else ""
        raise IntegrityError(f"{path} is missing{recorded}; {remedy.replace('delete it and ', '')}",
                             expected=expected_sha256) from None
    except OSError as error:
        raise IntegrityError(f"cannot read {path} ({error.strerror}); {remedy}") from None
    actual = sha256_bytes(data)
    check_sha256(path, actual, expected_sha256, remedy)
    return data, actual


@dataclass
class WatchedFile:
    """A file whose bytes were verified when it was loaded, checked again on request: cheaply
    (one stat) while its `stamp` (size, inode, modification time, taken before the bytes were
    read) is unchanged, by its sha256 when it moved. A run that keeps the loaded weights in
    memory uses it to notice the file going bad under it."""

    path: Path
    sha256: str
    stamp: tuple[int, int, int] | None

    def check(self, remedy: str = REDO) -> None:
        """Raise IntegrityError (one line: the file and its expected sha256) if the file is gone
        or its bytes no longer hash to `sha256`."""
        stamp = file_stamp(self.path)
        if stamp is not None and stamp == self.stamp:
            return
        read_verified(self.path, self.sha256, remedy)
        self.stamp = stamp  # the same bytes again (touched, or restored by a re-pull)


def file_stamp(path: str | Path) -> tuple[int, int, int] | None:
    """(size, inode, modification time in ns) of a file; None when it cannot be stat'ed."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_ino, stat.st_mtime_ns


def content_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, bytes) in name order: the tensors alone, whatever the header."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


# --- atomic writes -------------------------------------------------------------------------------


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, fsync the result, then rename it onto `path`. On a full disk (or
    an exhausted quota) the temporary file is removed, `path` keeps its previous bytes, and a
    DiskFullError says where."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as error:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path, error) from error
        raise
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    return path


def mount_point(path: str | Path) -> Path:
    """The mount point of the file system that holds `path` (or would hold it)."""
    here = Path(os.path.abspath(path))
    while not os.path.ismount(here) and here != here.parent:
        here = here.parent
    return here


def disk_full(path: str | Path, error: OSError) -> DiskFullError:
    """One line for ENOSPC / EDQUOT while writing `path`."""
    device = mount_point(Path(path).parent)
    if error.errno == errno.EDQUOT:
        return DiskFullError(f"disk quota exceeded on {device} writing {path}; free space (or raise the "
                             "quota) and rerun", path=path, device=device)
    return DiskFullError(f"no space left on {device} writing {path}; free space and rerun",
                         path=path, device=device)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: object) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# --- tensor files --------------------------------------------------------------------------------


@dataclass
class TensorFile:
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]  # the header without ddz.format and ddz.content_sha256
    format: str
    sha256: str  # of the whole file


def _unreadable(path: str | Path, why: object) -> IntegrityError:
    return IntegrityError(f"{path} is not a readable safetensors file ({why}); {REDO}")


def _parse_header(prefix: bytes, read: Callable[[int], bytes], path: str | Path,
                  size: int) -> tuple[dict, int]:
    """The JSON header of a safetensors file of `size` bytes whose first 8 bytes are `prefix`.
    The declared length is checked against the file's size before anything is read, so a
    hostile length allocates nothing."""
    try:
        if len(prefix) != 8:
            raise ValueError(f"{size} bytes, shorter than the 8-byte header length")
        (length,) = struct.unpack("<Q", prefix)
        if length > size - 8:
            raise ValueError(f"its header length {length} is larger than the file ({size} bytes)")
        if length > MAX_HEADER:
            raise ValueError(f"its header length {length} is over {MAX_HEADER} bytes")
        text = read(length)
        if len(text) != length:
            raise ValueError("truncated header")
        header = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise _unreadable(path, error) from None
    if not isinstance(header, dict):
        raise _unreadable(path, f"its header is a JSON {type(header).__name__}, not an object")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict)
                                 and all(isinstance(v, str) for v in meta.values())):
        raise _unreadable(path, "its __metadata__ is not a string -> string map")
    return header, length


def read_header(path: str | Path) -> dict[str, str]:
    """A tensor file's str -> str header, read without its tensors."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            header, _ = _parse_header(handle.read(8), handle.read, path, size)
    except FileNotFoundError:
        raise IntegrityError(f"{path} is missing; re-train or re-pull it") from None
    return dict(header.get("__metadata__") or {})


def _canonical_header(data: bytes) -> bytes:
    """The file's bytes with the header's metadata keys sorted, padded to the same length:
    safetensors writes them in hash-map order, which differs between processes."""
    position = 8
    header, length = _parse_header(data[:8], lambda n: data[position:position + n], "<serialized>", len(data))
    meta = header.pop("__metadata__", None)
    ordered = {"__metadata__": dict(sorted(meta.items()))} if meta is not None else {}
    ordered.update(header)
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > length:  # never, for the writer's own output
        return data
    return data[:8] + text + b" " * (length - len(text)) + data[8 + length:]


def write_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], format: str,
                  metadata: Mapping[str, str] | None = None) -> str:
    """Atomically write a tensor file (CPU copies of `tensors`, the ddz header); its sha256.
    The file is serialised in memory and written by Python, so that a full disk is an OSError
    (ENOSPC) that atomic_write turns into one line."""
    from safetensors.torch import save

    owned = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    header = {**(metadata or {}), FORMAT_KEY: format, CONTENT_KEY: content_sha256(owned)}
    data = _canonical_header(save(owned, metadata=header))
    del owned
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def read_tensors(path: str | Path, formats: str | Sequence[str], expected_sha256: str | None = None,
                 remedy: str = REDO) -> TensorFile:
    """Read a tensor file: its bytes checked against `expected_sha256` (when a record has one),
    its format against `formats`, its tensors against their recorded content sha256, and the
    tensors parsed from the same bytes that were hashed."""
    from safetensors.torch import load

    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    data, actual = read_verified(path, expected_sha256, remedy)
    position = 8
    header, length = _parse_header(data[:8], lambda n: data[position:position + n], path, len(data))
    meta = dict(header.get("__metadata__") or {})
    tag = meta.pop(FORMAT_KEY, None)
    tag = LEGACY_FORMATS.get(tag, tag)
    if tag not in formats:
        raise IntegrityError(f"{path} is not a {' or '.join(formats)} file (its format is {tag!r})")
    try:
        tensors = load(data)
    except Exception as error:  # safetensors raises its own error types for malformed files
        raise _unreadable(path, error) from None
    recorded = meta.pop(CONTENT_KEY, None)
    if recorded is not None and content_sha256(tensors) != recorded:
        raise IntegrityError(f"{path} is corrupt: its tensors do not match their recorded sha256; {remedy}")
    return TensorFile(tensors, meta, tag, actual)
