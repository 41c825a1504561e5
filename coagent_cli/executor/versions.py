"""Digests of key values, as the protocol core sees them, and the bytes behind them.

A key's version digest is the sha256 of a small canonical JSON document stored in the
blob store itself, so `content(digest)` needs no other table and survives a restart:

    one path   {"kind": "file", "digest": <sha256 of the bytes>, "mode": 420}
               {"kind": "symlink", "target": "..."}      (absent: the digest is ABSENT)
    several    {"paths": {path: image, ...}}   for a covering key such as `git:objects/`

Modes are normalised to what git records (0o755 when the owner may execute, else
0o644): images taken from the shadow snapshot carry only that, and one value must have
one digest whichever way it was imaged.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from coagent_cli.core.model import ABSENT, Digest
from coagent_cli.errors import JournalError
from coagent_cli.journal import BlobStore, FileImage


def normalised(image: FileImage) -> FileImage:
    if image.kind != "file" or image.mode is None:
        return image
    return FileImage("file", digest=image.digest, mode=0o755 if image.mode & 0o100 else 0o644)


def same(a: FileImage, b: FileImage) -> bool:
    """Equal as versions (bytes, exec bit, link target, presence)."""
    return normalised(a) == normalised(b)


def image_digest(blobs: BlobStore, image: FileImage) -> Digest:
    if image.kind == "absent":
        return ABSENT
    return _put(blobs, normalised(image).to_json())


def group_digest(blobs: BlobStore, images: Mapping[str, FileImage]) -> Digest:
    """One digest for several paths under one covering key (only what changed)."""
    if all(i.kind == "absent" for i in images.values()):
        return ABSENT
    return _put(blobs, {"paths": {p: normalised(i).to_json() for p, i in sorted(images.items())}})


def content(blobs: BlobStore, digest: Digest) -> bytes | None:
    """The bytes of a version: a file's contents, a link's target; None when absent."""
    if digest == ABSENT:
        return None
    try:
        doc = json.loads(blobs.get(digest))
    except (JournalError, ValueError):
        return None
    if not isinstance(doc, dict) or "kind" not in doc:
        return json.dumps(doc, sort_keys=True).encode()
    image = FileImage.from_json(doc)
    if image.kind == "symlink":
        return (image.target or "").encode()
    return blobs.get(image.digest) if image.digest else None


def image_of(blobs: BlobStore, digest: Digest) -> FileImage | None:
    """The single-path image behind a digest (ABSENT -> absent); None if it is not one."""
    if digest == ABSENT:
        return FileImage.absent()
    try:
        doc = json.loads(blobs.get(digest))
    except (JournalError, ValueError):
        return None
    return FileImage.from_json(doc) if isinstance(doc, dict) and "kind" in doc else None


def _put(blobs: BlobStore, doc: Any) -> Digest:
    return blobs.put(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
