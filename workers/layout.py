"""A run on disk, in one place: where each file goes, how it is published, and which
shard schema versions can be read. Every writer and reader of runs goes through here.

    <out>/<run id>/run.json
    <out>/<run id>/requests/target=<name>/part-<worker:04d>-<n:06d>.parquet

A location is a local path or a pyarrow filesystem URI (``s3://``, ``gs://``,
``file://``). Publishing is atomic for readers: on a filesystem the bytes go to a
temporary name beginning with ``_`` and are then renamed over the final name; on an
object store an upload becomes visible only when complete, so the final key is
written directly. Readers list only published names (not ``_`` or ``.``).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable

from pyarrow import fs as pafs

from blastradius.workers.record import METADATA_KEY, SCHEMA_VERSION

MANIFEST = "run.json"
REQUESTS = "requests"
_TARGET = "target="
_OBJECT_STORES = {"s3", "gcs"}


def is_uri(location: str) -> bool:
    """Whether ``location`` is a filesystem URI rather than a local path."""
    return "://" in location


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and its path for a local path or a filesystem URI."""
    if is_uri(location):
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), str(location)


def join(location: str, *names: str) -> str:
    """``location/name/...``, for paths and URIs alike."""
    return "/".join([location.rstrip("/"), *names])


def shard_dir(run_dir: str, target: str) -> str:
    """The directory (path or URI) of one target's shards in a run."""
    return join(run_dir, REQUESTS, f"{_TARGET}{target}")


def shard_name(worker: int, n: int) -> str:
    """File name of worker ``worker``'s ``n``-th shard."""
    return f"part-{worker:04d}-{n:06d}.parquet"


def is_published(name: str) -> bool:
    """Whether a file name is a finished file (temporary ones begin with ``_`` or ``.``)."""
    return not name.startswith(("_", "."))


def publish(location: str, write: Callable[[pafs.FileSystem, str], None]) -> str:
    """Publish the file at ``location`` atomically; ``write(filesystem, path)`` writes its
    bytes to the path it is given. Returns the final path on its filesystem."""
    filesystem, final = resolve(location)
    if filesystem.type_name in _OBJECT_STORES:
        write(filesystem, final)
        return final
    parent, _, name = final.rpartition("/")
    temp = f"{parent}/_{uuid.uuid4().hex}-{name}"
    try:
        write(filesystem, temp)
        filesystem.move(temp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            filesystem.delete_file(temp)
        raise
    return final


def publish_bytes(location: str, data: bytes) -> str:
    """Publish ``data`` as the whole file at ``location`` (see ``publish``)."""

    def write(filesystem: pafs.FileSystem, path: str) -> None:
        with filesystem.open_output_stream(path) as out:
            out.write(data)

    return publish(location, write)


def overwrite_bytes(location: str, data: bytes) -> None:
    """Write ``data`` over the file at ``location`` in place (not atomic): for when there is
    no room for a temporary copy beside it, as on a full disk."""
    filesystem, path = resolve(location)
    with filesystem.open_output_stream(path) as out:
        out.write(data)


def make_dir(location: str) -> None:
    """Create a directory (and its parents); ``OSError`` when it cannot be."""
    filesystem, path = resolve(location)
    filesystem.create_dir(path, recursive=True)


def remove_dir(location: str) -> None:
    """Delete a directory and everything in it."""
    filesystem, path = resolve(location)
    filesystem.delete_dir(path)


def run_dirs(filesystem: pafs.FileSystem, path: str) -> list[str]:
    """``path`` itself when it is a run directory, else the run directories right below it."""
    if _is_file(filesystem, f"{path}/{MANIFEST}"):
        return [path]
    selector = pafs.FileSelector(path, allow_not_found=True)
    children = [
        i.path for i in filesystem.get_file_info(selector) if i.type == pafs.FileType.Directory
    ]
    return sorted(c for c in children if _is_file(filesystem, f"{c}/{MANIFEST}"))


def shards(filesystem: pafs.FileSystem, run_dir: str) -> list[tuple[str, str]]:
    """(target, path) of every published shard of a run, sorted."""
    selector = pafs.FileSelector(f"{run_dir}/{REQUESTS}", recursive=True, allow_not_found=True)
    found = []
    for info in filesystem.get_file_info(selector):
        parent, _, name = info.path.rpartition("/")
        folder = parent.rpartition("/")[2]
        if (
            info.type == pafs.FileType.File
            and is_published(name)
            and name.endswith(".parquet")
            and folder.startswith(_TARGET)
        ):
            found.append((folder.removeprefix(_TARGET), info.path))
    return sorted(found)


def check_schema_version(metadata: dict[bytes, bytes] | None) -> int:
    """The schema version a shard's metadata declares (none: 1); ``ValueError`` naming the
    version when this blastradius cannot read it."""
    version = (metadata or {}).get(METADATA_KEY, b"1").decode(errors="replace")
    if not version.isdigit() or not 1 <= int(version) <= SCHEMA_VERSION:
        raise ValueError(
            f"schema version {version} is not one this blastradius reads "
            f"(1 to {SCHEMA_VERSION}): read it with the blastradius that wrote it"
        )
    return int(version)


def _is_file(filesystem: pafs.FileSystem, path: str) -> bool:
    return filesystem.get_file_info(path).type == pafs.FileType.File
