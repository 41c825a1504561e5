"""The blob store and file images: byte-exact round trips of files, modes, links, absence."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coagent_cli.errors import ExecutionError, JournalError
from coagent_cli.journal import BlobStore, FileImage

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def stored_files(store: BlobStore) -> list[Path]:
    return [p for p in store.root.rglob("*") if p.is_file() and p.parent.name != "tmp"]


@pytest.mark.parametrize("data", [b"", b"hello\n", bytes(range(256)) * 1000, b"\r\n\0\xff"])
def test_put_get_round_trip(blobs: BlobStore, data: bytes) -> None:
    digest = blobs.put(data)
    assert blobs.get(digest) == data
    assert blobs.path_of(digest).parent.name == digest[:2]


def test_same_bytes_are_stored_once_and_no_temp_file_is_left(blobs: BlobStore) -> None:
    first, second = blobs.put(b"same"), blobs.put(b"same")
    assert first == second
    assert len(stored_files(blobs)) == 1
    assert list((blobs.root / "tmp").iterdir()) == []


def test_corrupt_or_unknown_blob_is_a_journal_error(blobs: BlobStore) -> None:
    digest = blobs.put(b"precious")
    path = blobs.path_of(digest)
    path.chmod(0o644)
    path.write_bytes(b"tampered")
    with pytest.raises(JournalError, match="corrupt"):
        blobs.get(digest)
    with pytest.raises(JournalError):
        blobs.get("0" * 64)
    with pytest.raises(JournalError, match="not a sha256"):
        blobs.get("../../etc/passwd")


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o755, 0o700, 0o444])
@pytest.mark.parametrize("data", [b"", b"text\n", bytes(range(256))])
def test_file_capture_restore_is_byte_and_mode_exact(
    blobs: BlobStore, tmp_path: Path, mode: int, data: bytes
) -> None:
    path = tmp_path / "w" / "f.bin"
    path.parent.mkdir()
    path.write_bytes(data)
    path.chmod(mode)
    image = blobs.capture(path)
    assert image.kind == "file" and image.mode == mode
    path.chmod(0o644)
    path.write_bytes(b"something else entirely")
    blobs.restore(path, image)
    assert path.read_bytes() == data
    assert path.stat().st_mode & 0o7777 == mode


def test_restore_recreates_a_deleted_file_and_its_directories(blobs: BlobStore, tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"deep")
    image = blobs.capture(path)
    path.unlink()
    path.parent.rmdir()
    blobs.restore(path, image)
    assert path.read_bytes() == b"deep"


def test_symlinks_are_captured_and_restored_not_followed(blobs: BlobStore, tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_bytes(b"target bytes")
    link = tmp_path / "link"
    link.symlink_to("target.txt")
    image = blobs.capture(link)
    assert image == FileImage("symlink", target="target.txt")

    link.unlink()
    link.symlink_to("/nonexistent/elsewhere")
    blobs.restore(link, image)
    assert os.readlink(link) == "target.txt"

    # Restoring a file image where a symlink stands replaces the link, not its target.
    file_image = FileImage("file", digest=blobs.put(b"new"), mode=0o644)
    blobs.restore(link, file_image)
    assert not link.is_symlink() and link.read_bytes() == b"new"
    assert target.read_bytes() == b"target bytes"


def test_dangling_symlink_round_trips(blobs: BlobStore, tmp_path: Path) -> None:
    link = tmp_path / "dangling"
    link.symlink_to("no/such/file")
    image = blobs.capture(link)
    link.unlink()
    blobs.restore(link, image)
    assert os.readlink(link) == "no/such/file"


def test_absent_images(blobs: BlobStore, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert blobs.capture(missing) == FileImage.absent()
    assert blobs.capture(tmp_path / "no" / "dir" / "x") == FileImage.absent()
    blobs.restore(missing, FileImage.absent())  # already absent: nothing to do
    present = tmp_path / "present"
    present.write_bytes(b"x")
    blobs.restore(present, FileImage.absent())
    assert not present.exists()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "present-again")
    blobs.restore(link, FileImage.absent())
    assert not os.path.lexists(link)


def test_a_file_may_replace_an_emptied_directory(blobs: BlobStore, tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    blobs.restore(tmp_path / "x", FileImage("file", digest=blobs.put(b"f"), mode=0o600))
    assert (tmp_path / "x").read_bytes() == b"f"


def test_capturing_a_directory_is_an_execution_error(blobs: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(ExecutionError):
        blobs.capture(tmp_path)


def test_file_image_json_round_trip_and_validation() -> None:
    images = [
        FileImage("file", digest="a" * 64, mode=0o755),
        FileImage("symlink", target="../x"),
        FileImage.absent(),
    ]
    for image in images:
        assert FileImage.from_json(image.to_json()) == image
    with pytest.raises(ValueError):
        FileImage("file")
    with pytest.raises(ValueError):
        FileImage("absent", digest="a" * 64)
    with pytest.raises(ValueError):
        FileImage("socket")  # type: ignore[arg-type]
