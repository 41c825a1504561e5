"""coagent-gate: the fast gate client of coagent's shells and shims (stdlib only).

Run as `python3 -S -E shims/bin/coagent-gate MODE ...` (a launcher for this module, so
that its bytecode is cached); it imports nothing outside the standard
library, so it starts in ~15 ms and needs no installed package. Two modes:

  serve --out-fd N --shell-pid P
      The helper behind `coagent.bashrc`. It holds ONE daemon connection for the life of
      the shell (the daemon ties an op to the connection that began it) and answers the
      rc over pipes. Requests are NUL-terminated fields, replies one line each:
        B <hist> <cwd> <line>   ->  "<hist> run 0" | "<hist> refused <status>" |
                                    "<hist> skip <status>" | "<hist> served <status>"
        E <status>              ->  "ok <status to report> <pending notices>"
      `hist` is the history number of the line: a line is begun once even when its
      first simple command runs in a subshell and the parent asks again. Messages for
      the agent ([coagent] notices, refusals) go to stderr; served content to fd N.

  shim NAME ARGS...
      The body of the `bash`/`sh` wrappers in this directory: `NAME -c LINE` and
      `NAME script` run as one gated op; an interactive bash gets the gated rc;
      anything else runs the real shell as is.

Exit status 126 means the daemon refused the command (or could not be reached).
"""

import _signal as signal  # the `signal` module would import `enum`, 4 ms of start-up
import os
import select
import sys
from _json import encode_basestring_ascii, make_scanner
from _socket import AF_UNIX, SOCK_STREAM, socket

# Start-up time is the cost of every shimmed `bash -c`: the `json`, `socket` and
# `subprocess` modules would triple it (they pull in `re` and `enum`), so this script
# speaks JSON through the C accelerator `json` itself uses, and forks by hand.

REFUSED = 126
PROTOCOL = 1
SHIMS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIMS_BIN = os.path.join(SHIMS, "bin")
RC_FILE = os.path.join(SHIMS, "coagent.bashrc")
DIFF_LINES = 200


class _JsonSettings:
    """What json's C scanner reads from a decoder (json.decoder.JSONDecoder defaults)."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int
    memo = {}

    @staticmethod
    def parse_constant(name):
        return float(name.replace("Infinity", "inf"))


_scan = make_scanner(_JsonSettings())


def to_json(value):
    """JSON for the shapes requests have: dicts of str, int, bool and None."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{to_json(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(int(value))


def from_json(text):
    value, end = _scan(text, 0)
    if text[end:].strip():
        raise ValueError("extra data after the JSON value")
    return value


def shell_join(words):
    """Like shlex.join (without importing shlex and re)."""
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_")
    return " ".join(w if w and set(w) <= safe else "'" + w.replace("'", "'\"'\"'") + "'" for w in words)


class GateError(Exception):
    """The daemon refused, or could not be reached; str() is the line to print."""


class Daemon:
    """One connection to $COAGENT_SOCKET, said hello to on first use."""

    def __init__(self, env):
        self.path = env.get("COAGENT_SOCKET", "")
        self.agent = env.get("COAGENT_AGENT", "")
        self.token = env.get("COAGENT_TOKEN", "")
        self.sock = None
        self.buf = b""
        self.ids = 0

    def connect(self):
        if not (self.path and self.agent and self.token):
            raise GateError("no daemon: COAGENT_SOCKET, COAGENT_AGENT and COAGENT_TOKEN must be set")
        self.sock = socket(AF_UNIX, SOCK_STREAM)
        try:
            self.sock.connect(self.path)
        except OSError as exc:
            self.close()
            raise GateError(f"daemon unreachable at {self.path}: {exc.strerror or exc}") from None
        self.call("hello", protocol=PROTOCOL, role="agent", agent=self.agent, token=self.token)

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, b""

    def call(self, kind, timeout=None, **fields):
        """One request, one reply dict; GateError on an error reply or a lost socket."""
        if self.sock is None:
            self.connect()
        self.ids += 1
        line = to_json({"type": kind, "id": self.ids, **fields}).encode() + b"\n"
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(line)
            reply = self._read_line()
        except (OSError, ValueError) as exc:
            self.close()
            raise GateError(f"lost the daemon: {exc}") from None
        if reply.get("type") == "error":
            raise GateError(f"{reply.get('message')} ({reply.get('code')})")
        return reply

    def _read_line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ValueError("the daemon closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        try:
            reply = from_json(line.decode())
        except StopIteration:  # the scanner's way of saying "not JSON"
            raise ValueError("the daemon sent a line that is not JSON") from None
        if not isinstance(reply, dict):
            raise ValueError("reply is not a JSON object")
        return reply


def say(text):
    """A message for the agent: on stderr, every line marked [coagent]."""
    sys.stderr.write("".join(f"[coagent] {ln}\n" for ln in text.splitlines() or [""]))
    sys.stderr.flush()


def show_notices(notices):
    for n in notices:
        say(f"notice {n.get('id')} ({n.get('kind')}) on {n.get('key')} by {n.get('by')}: "
            f"{n.get('detail') or 'an earlier agent changed what you read'}")
        diff = (n.get("diff") or "").splitlines()
        if diff:
            clipped = diff[:DIFF_LINES] + ([f"... ({len(diff) - DIFF_LINES} more diff lines)"]
                                          if len(diff) > DIFF_LINES else [])
            sys.stderr.write("".join(ln + "\n" for ln in clipped))
    if notices:
        say("re-check your plan against these changes (coagent inbox --json lists them again)")


def begin(daemon, line, cwd, out):
    """Ask to run `line`; returns (verdict, status). Prints notices, refusals, served text."""
    try:
        grant = daemon.call("begin_op", command=line, cwd=cwd)
    except GateError as exc:
        say(f"refused: {exc}")
        return "refused", REFUSED
    show_notices(grant.get("notices") or [])
    action, status = grant.get("action"), grant.get("exit_status")
    if action == "run":
        return "run", grant["op"]
    if action == "served":
        out.write(grant.get("content") or "")
        out.flush()
        return "served", 0 if status is None else status
    say("refused: the daemon skipped this command" + (f": {grant['content']}" if grant.get("content") else ""))
    return "skip", REFUSED if status is None else status


def end(daemon, op, status):
    """Report completion; returns the number of notices now pending (0 if unknown)."""
    try:
        reply = daemon.call("end_op", timeout=60, op=op, exit_status=max(0, min(status, 255)))
    except GateError as exc:
        say(f"could not report the end of the command: {exc}")
        return 0
    pending = reply.get("pending_notices") or 0
    if pending:
        say(f"{pending} notice(s) pending: run `coagent inbox`")
    return pending


# ---------------------------------------------------------------- serve (the rc's helper)


class LineGate:
    """The helper's state: which history line is begun, its verdict and open op."""

    def __init__(self, daemon, out):
        self.daemon, self.out = daemon, out
        self.hist = None
        self.verdict, self.value = "run", 0
        self.op = None

    def on_begin(self, hist, cwd, line):
        if hist != self.hist:
            self.close_open(0)
            self.hist = hist
            self.verdict, self.value = begin(self.daemon, line, cwd, self.out)
            self.op = self.value if self.verdict == "run" else None
        return f"{hist} {self.verdict} {0 if self.verdict == 'run' else self.value}"

    def on_end(self, status):
        shown = status if self.verdict == "run" else self.value
        pending = self.close_open(status)
        self.hist, self.verdict, self.value = None, "run", 0
        return f"ok {shown} {pending}"

    def close_open(self, status):
        op, self.op = self.op, None
        return end(self.daemon, op, status) if op is not None else 0


def read_fields(stream, count, pending):
    """`count` NUL-terminated fields from a binary stream (None at end of input)."""
    while pending.count(b"\0") < count:
        chunk = os.read(stream, 65536)
        if not chunk:
            return None
        pending.extend(chunk)
    fields = []
    for _ in range(count):
        end_at = pending.index(b"\0")
        fields.append(pending[:end_at].decode("utf-8", "surrogateescape"))
        del pending[: end_at + 1]
    return fields


def wait_readable(fd, shell_pid):
    """Block until fd is readable; False once the shell is gone (the helper then exits
    even if a background job of the shell still holds the pipe open)."""
    while not select.select([fd], [], [], 2.0)[0]:
        try:
            os.kill(shell_pid, 0)
        except ProcessLookupError:
            return False
    return True


def serve(args):
    out_fd = int(args[args.index("--out-fd") + 1])
    shell_pid = int(args[args.index("--shell-pid") + 1])
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # outlive the tty long enough to end the last op
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C at the prompt is for the shell, not us
    gate = LineGate(Daemon(os.environ), os.fdopen(out_fd, "w", closefd=False))
    try:
        gate.daemon.connect()
    except GateError as exc:
        say(f"{exc}; every command will be refused until it is reachable")
    pending = bytearray()
    while wait_readable(0, shell_pid):
        head = read_fields(0, 1, pending)
        if head is None:
            break
        if head[0] == "B":
            fields = read_fields(0, 3, pending)
        else:
            fields = read_fields(0, 1, pending)
        if fields is None:
            break
        reply = gate.on_begin(*fields) if head[0] == "B" else gate.on_end(int(fields[0] or 0))
        try:
            os.write(1, reply.encode() + b"\n")
        except OSError:  # the shell is gone (its EXIT trap does not wait for our reply)
            break
    gate.close_open(0)  # the shell went away mid-line (`exit`): close its op
    return 0


# ---------------------------------------------------------------- shim (bash/sh wrappers)

# Options of bash and sh that take the next word as their argument.
ARG_OPTIONS = {"-o", "+o", "-O", "+O", "--rcfile", "--init-file"}


def parse_shell_args(args):
    """(has_c, index of the first operand or None, interactive flag) of a shell argv."""
    has_c = interactive = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--", "-"):
            return has_c, (i + 1 if i + 1 < len(args) else None), interactive
        if arg in ARG_OPTIONS:
            i += 2
            continue
        if arg.startswith("--"):
            interactive |= arg == "--interactive"
        elif arg[:1] in "-+" and len(arg) > 1:
            has_c |= arg[0] == "-" and "c" in arg[1:]
            interactive |= arg[0] == "-" and "i" in arg[1:]
            if arg[0] == "-" and "s" in arg[1:]:
                return has_c, None, interactive
        else:
            return has_c, i, interactive
        i += 1
    return has_c, None, interactive


def real_shell(name):
    """The first `name` on PATH that is not one of our shims."""
    override = os.environ.get(f"COAGENT_REAL_{name.upper()}")
    if override and os.access(override, os.X_OK):
        return override
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if not os.access(candidate, os.X_OK) or os.path.isdir(candidate):
            continue
        if os.path.realpath(os.path.dirname(candidate)) == os.path.realpath(SHIMS_BIN):
            continue
        return candidate
    raise SystemExit(f"[coagent] no real {name} found on PATH (besides the shims in {SHIMS_BIN})")


def gated_run(name, real, args, line):
    """Run `real args` as one op: begin, run (COAGENT_GATED=1 inside), end, exit."""
    daemon = Daemon(os.environ)
    verdict, value = begin(daemon, line, os.getcwd(), sys.stdout)
    if verdict != "run":
        return value
    env = dict(os.environ, COAGENT_GATED="1")
    pid = os.fork()
    if pid == 0:
        try:
            os.execve(real, [name] + args, env)
        finally:
            os._exit(127)

    def pass_on(signum, _frame):
        if signum in (signal.SIGTERM, signal.SIGHUP):  # the terminal sends the others to the child too
            os.kill(pid, signum)

    for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, pass_on)  # a handler, not SIG_IGN: the child must not inherit it
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    status = 128 - status if status < 0 else status
    end(daemon, value, status)
    daemon.close()
    return status


def shim(args):
    name, args = args[0], args[1:]
    real = real_shell(name)
    os.environ.pop("COAGENT_GATED", None)  # set by the wrapper only to stop recursion
    has_c, operand, interactive = parse_shell_args(args)
    if has_c and operand is not None:
        return gated_run(name, real, args, args[operand])
    if operand is not None:
        return gated_run(name, real, args, shell_join([name] + args))
    if name == "bash" and (interactive or sys.stdin.isatty()) and "--norc" not in args \
            and "--rcfile" not in args:
        os.execv(real, [name, "--rcfile", RC_FILE] + args)
    if not sys.stdin.isatty():
        say(f"warning: `{name}` reading commands from a pipe is not gated")
    os.execv(real, [name] + args)


def main(argv):
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    if argv[:1] == ["shim"] and len(argv) > 1:
        return shim(argv[1:])
    sys.stderr.write("usage: coagent-gate serve --out-fd N --shell-pid P | shim NAME ARGS...\n")
    return 2
