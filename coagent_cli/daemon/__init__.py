"""The daemon: typed JSON-lines messages over a private Unix socket, and what serves them.

    wire.py        pydantic models of every message, the one parse entry point
    transport.py   the asyncio server (Server); its parts beside it: socket_safety,
                   framing, connection, session (one connection's life), events (the
                   hub for monitors), fake (FakeHandler)
    client.py      a synchronous client (stdlib only, fast to import) and an async one
    service.py     the Handler: controller, executor and journal of one run
    journaling.py  the core's traffic in the journal; resume.py rebuilds from it
    run.py         start/stop/recover/undo; cli.py the commands

This module stays free of heavy imports (no pydantic) because the sync client, which
every gated shell command imports, imports it first.
"""

from __future__ import annotations

PROTOCOL_VERSION = 1
"""Sent in `hello`; the server refuses any other value with `bad_version`."""

MAX_LINE = 1 << 20
"""Default longest request line in bytes (the newline excluded)."""

MAX_REPLY_LINE = 64 << 20
"""Longest reply line a client accepts (replies may carry served file content)."""

ENV_SOCKET = "COAGENT_SOCKET"
ENV_AGENT = "COAGENT_AGENT"
ENV_TOKEN = "COAGENT_TOKEN"

# Stable error codes that cross the wire. Handlers may add their own (a CoagentError's
# `code`), but these are the ones the wire layer itself produces.
BAD_JSON = "bad_json"                        # not valid JSON / not UTF-8
BAD_MESSAGE = "bad_message"                  # JSON, but not a well-formed message
UNKNOWN_TYPE = "unknown_type"                # a `type` tag no message has
TOO_LARGE = "too_large"                      # line longer than the server's limit
BAD_VERSION = "bad_version"                  # hello with another protocol version
NOT_AUTHENTICATED = "not_authenticated"      # a request before a successful hello
ALREADY_AUTHENTICATED = "already_authenticated"
FORBIDDEN = "forbidden"                      # role may not send this, or names another agent
PEER_REFUSED = "peer_refused"                # peer process runs under another uid
INTERNAL = "internal"                        # the handler failed; the server lives on
BAD_REPLY = "bad_reply"                      # client side: the server sent garbage
UNREACHABLE = "unreachable"                  # client side: cannot connect
DISCONNECTED = "disconnected"                # client side: server closed the connection
TIMEOUT = "timeout"                          # client side: no reply in time
