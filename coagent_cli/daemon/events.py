"""Events: fan-out of daemon events to subscribers through bounded queues.

A subscriber that falls `queue` events behind loses its backlog and gets one fresh
`snapshot` event instead (see `Subscription`), so memory per subscriber is bounded."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable

from coagent_cli.daemon import wire


class Subscription:
    """One subscriber's bounded queue of encoded events.

    Overflow policy: when an event arrives and `maxsize` events already wait, the whole
    backlog is dropped and a resync is pending; events published until the subscriber
    reads again are dropped too (counted in `dropped`). Its next read is one `snapshot`
    event built at that moment, so it carries everything the dropped events said. The
    queue never holds more than `maxsize` events."""

    def __init__(self, hub: "EventHub", maxsize: int) -> None:
        self._hub = hub
        self.maxsize = maxsize
        self._queue: deque[bytes] = deque()
        self._resync = True       # every stream starts with a snapshot
        self.dropped = 0          # events replaced by the pending snapshot
        self.total_dropped = 0
        self._ready = asyncio.Event()
        self._ready.set()

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, line: bytes) -> None:
        if self._resync:
            self._drop(1)
        elif len(self._queue) >= self.maxsize:
            self._drop(len(self._queue) + 1)
            self._queue.clear()
            self._resync = True
        else:
            self._queue.append(line)
        self._ready.set()

    def _drop(self, count: int) -> None:
        self.dropped += count
        self.total_dropped += count

    async def next(self) -> bytes:
        """The next encoded event line; waits until there is one."""
        while not (self._resync or self._queue):
            self._ready.clear()
            await self._ready.wait()
        if self._resync:
            self._resync = False
            line = wire.encode(self._hub.snapshot_event(self.dropped))
            self.dropped = 0
            return line
        return self._queue.popleft()


class EventHub:
    """Fan-out of daemon events to subscribers. The daemon calls `publish`; it never
    blocks and costs one encoding per event whatever the number of subscribers."""

    def __init__(self, *, maxsize: int = 256, snapshot: Callable[[], wire.Snapshot] | None = None) -> None:
        self.maxsize = maxsize
        self.snapshot = snapshot
        self.seq = 0
        self._subs: set[Subscription] = set()

    def publish(self, event: wire.Event) -> wire.Event:
        """Number the event, queue it for every subscriber, and return it numbered."""
        self.seq += 1
        event = event.model_copy(update={"seq": self.seq})
        if self._subs:
            line = wire.encode(event)
            for sub in self._subs:
                sub.offer(line)
        return event

    def snapshot_event(self, dropped: int) -> wire.Event:
        snap = self.snapshot() if self.snapshot is not None else None
        return wire.Event(seq=self.seq, kind="snapshot", snapshot=snap, dropped=dropped)

    def attach(self) -> Subscription:
        sub = Subscription(self, self.maxsize)
        self._subs.add(sub)
        return sub

    def detach(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)
