"""Python implementations behind `builtin:` specs: file edits that want exact bytes.

Each takes the workspace root and the bound params (paths already canonical and confined)
and returns an `Outcome`. A refusal the agent should read (old text absent, file exists)
raises `ToolFailure`, which becomes exit status 1 with the message as output, just as a
failing command would. Text params are written as UTF-8; files are read and edited as
bytes, so content outside the edited span is never re-encoded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class Outcome:
    exit_status: int
    output: str


class ToolFailure(Exception):
    """The op does not apply to the current state; the message says why."""


Impl = Callable[[Path, dict[str, Any]], Outcome]


def _existing_file(root: Path, rel: str) -> Path:
    path = root / rel
    if not path.is_file():
        what = "a directory" if path.is_dir() else "missing"
        raise ToolFailure(f"{rel}: not a regular file ({what})")
    return path


def _parent_must_exist(root: Path, rel: str) -> Path:
    path = root / rel
    if not path.parent.is_dir():
        raise ToolFailure(f"{rel}: directory {os.path.dirname(rel)} does not exist; "
                          "create it first with make_dir")
    return path


def write_file(root: Path, p: dict[str, Any]) -> Outcome:
    path = _parent_must_exist(root, p["path"])
    if path.is_dir():
        raise ToolFailure(f"{p['path']}: is a directory")
    data = p["content"].encode()
    path.write_bytes(data)
    return Outcome(0, f"wrote {len(data)} bytes to {p['path']}")


def create_file(root: Path, p: dict[str, Any]) -> Outcome:
    path = _parent_must_exist(root, p["path"])
    if os.path.lexists(path):
        raise ToolFailure(f"{p['path']}: already exists (use write_file to replace it)")
    data = (p.get("content") or "").encode()
    with open(path, "xb") as f:
        f.write(data)
    return Outcome(0, f"created {p['path']} ({len(data)} bytes)")


def append_to_file(root: Path, p: dict[str, Any]) -> Outcome:
    path = _parent_must_exist(root, p["path"])
    if path.is_dir():
        raise ToolFailure(f"{p['path']}: is a directory")
    data = p["text"].encode()
    with open(path, "ab") as f:
        f.write(data)
    return Outcome(0, f"appended {len(data)} bytes to {p['path']}")


def replace_in_file(root: Path, p: dict[str, Any]) -> Outcome:
    path = _existing_file(root, p["path"])
    old, new = p["old"].encode(), p["new"].encode()
    if not old:
        raise ToolFailure("old text is empty; give the exact text to replace")
    body = path.read_bytes()
    at = body.find(old)
    if at < 0:
        raise ToolFailure(f"{p['path']}: old text not found; nothing replaced")
    count = _occurrences(body, old)
    if count > 1:
        raise ToolFailure(f"{p['path']}: old text occurs {count} times (counting overlaps); "
                          "include more surrounding text so it is unique")
    path.write_bytes(body[:at] + new + body[at + len(old):])
    return Outcome(0, f"replaced 1 occurrence in {p['path']}")


def _occurrences(body: bytes, needle: bytes) -> int:
    count, at = 0, body.find(needle)
    while at >= 0:
        count, at = count + 1, body.find(needle, at + 1)
    return count


def insert_lines(root: Path, p: dict[str, Any]) -> Outcome:
    path = _existing_file(root, p["path"])
    lines = path.read_bytes().splitlines(keepends=True)
    after = _insert_point(lines, p)
    text = p["text"].encode()
    if text and not text.endswith(b"\n"):
        text += b"\n"
    if after > 0 and not lines[after - 1].endswith(b"\n"):
        lines[after - 1] += b"\n"
    path.write_bytes(b"".join(lines[:after]) + text + b"".join(lines[after:]))
    return Outcome(0, f"inserted {len(text.splitlines())} line(s) after line {after} "
                   f"of {p['path']}")


def _insert_point(lines: list[bytes], p: dict[str, Any]) -> int:
    """Number of lines to keep above the insertion."""
    if (p.get("line") is None) == (p.get("anchor") is None):
        raise ToolFailure("give exactly one of `line` or `anchor`")
    if p.get("anchor") is not None:
        anchor = p["anchor"].encode()
        hits = [i for i, line in enumerate(lines) if anchor in line]
        if len(hits) != 1:
            raise ToolFailure(f"{p['path']}: anchor text is on {len(hits)} lines, not exactly one")
        return hits[0] + 1
    if not 0 <= p["line"] <= len(lines):
        raise ToolFailure(f"{p['path']}: line {p['line']} is outside 0..{len(lines)}")
    return int(p["line"])


IMPLEMENTATIONS: dict[str, Impl] = {
    "write_file": write_file,
    "create_file": create_file,
    "append_to_file": append_to_file,
    "replace_in_file": replace_in_file,
    "insert_lines": insert_lines,
}


def run_builtin(name: str, root: Path, params: dict[str, Any]) -> Outcome:
    try:
        return IMPLEMENTATIONS[name](root, params)
    except ToolFailure as e:
        return Outcome(1, f"{name}: {e}")
    except OSError as e:
        return Outcome(1, f"{name}: {e.strerror or e}: {e.filename or ''}".rstrip(": "))
