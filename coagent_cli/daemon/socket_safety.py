"""Socket safety: the private run directory, the listening socket, peer credentials.

The socket lives in a directory of mode 0700 owned by us (created so, or refused); the
socket file is 0600; peers of another uid are refused (SO_PEERCRED)."""

from __future__ import annotations

import os
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from coagent_cli.daemon import PEER_REFUSED
from coagent_cli.errors import UsageError, WireError

_UCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}

# ---------------------------------------------------------------- peer credentials


@dataclass(frozen=True, slots=True)
class PeerCred:
    pid: int
    uid: int
    gid: int


def parse_ucred(raw: bytes) -> PeerCred:
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCred(pid, uid, gid)


def peer_cred(sock: socket.socket) -> PeerCred | None:
    """The peer's pid/uid/gid, or None where SO_PEERCRED does not exist (non-Linux;
    there the 0700 directory is the only guard)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    return parse_ucred(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))


def peer_of(sock: socket.socket) -> PeerCred | None:
    """`peer_cred`, or None when the socket cannot tell (it may already be gone)."""
    try:
        return peer_cred(sock)
    except OSError:
        return None


def check_peer(peer_uid: int, own_uid: int) -> None:
    """Refuse a peer running under another uid. Root gets no exception: a daemon run
    by a user should not take orders from root-owned processes it did not expect."""
    if peer_uid != own_uid:
        raise WireError(f"peer uid {peer_uid} is not the daemon's uid {own_uid}", code=PEER_REFUSED)


# ---------------------------------------------------------------- run directory


def prepare_run_dir(directory: Path) -> None:
    """Create `directory` with mode 0700, or accept it only if it already is a real
    directory of mode 0700 owned by us. Its parents are created with default modes."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir(mode=0o700)
        os.chmod(directory, 0o700)  # mkdir's mode is masked by the umask
    except FileExistsError:
        pass
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{directory} is not a directory", code="unsafe_run_dir")
    if info.st_uid != os.geteuid():
        raise UsageError(f"{directory} is owned by uid {info.st_uid}, not us", code="unsafe_run_dir")
    if stat.S_IMODE(info.st_mode) != 0o700:
        mode = oct(stat.S_IMODE(info.st_mode))
        raise UsageError(f"{directory} has mode {mode}, want 0o700", code="unsafe_run_dir")


def bind_socket(path: Path) -> socket.socket:
    prepare_run_dir(path.parent)
    remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)  # the 0700 directory already keeps others out meanwhile
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {path}: {exc}", code="socket_unavailable") from exc
    sock.setblocking(False)
    return sock


def remove_stale_socket(path: Path) -> None:
    """A socket file left by a dead daemon is removed; a live daemon's is refused."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise UsageError(f"{path} exists and is not a socket", code="socket_unavailable")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise UsageError(f"a daemon already listens on {path}", code="socket_unavailable")
