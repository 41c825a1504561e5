"""Hot reload of the tool library inside the daemon.

The executor resolves every request against one live `ToolLibrary`, and a reload swaps
that library's state in place (atomically, under its own lock). So reloading is all it
takes for the next begin_op to see a new or changed tool, and for the classifier to lift
a raw command onto it. This module does the watching and says what changed:

    LibraryWatcher thread: files changed -> library.reload() -> on_change
        -> loop.call_soon_threadsafe -> LibraryFeed.refresh() on the event loop
        -> a LibraryChange (added / changed / removed names) -> the daemon's callback

`refresh` diffs the active tools against the set it last reported, so a reload that
somebody else triggered (the daemon reloads once when a tool call names an unknown tool)
is reported exactly once, whoever noticed it first.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from coagent_cli.tools.library import ToolLibrary
    from coagent_cli.tools.watcher import LibraryWatcher

log = logging.getLogger(__name__)

__all__ = ["LibraryChange", "LibraryFeed", "diff_tools"]


@dataclass(frozen=True)
class LibraryChange:
    """How the active tool set moved between two looks at the library."""

    version: int                 # the library's version after the change
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def diff_tools(old: dict[str, str], new: dict[str, str], version: int) -> LibraryChange:
    """Pure: old and new map each active tool's name to its spec's serialised form."""
    return LibraryChange(
        version,
        added=tuple(sorted(new.keys() - old.keys())),
        changed=tuple(sorted(n for n in new.keys() & old.keys() if new[n] != old[n])),
        removed=tuple(sorted(old.keys() - new.keys())),
    )


def _active(library: "ToolLibrary") -> dict[str, str]:
    return {spec.name: spec.model_dump_json() for spec in library.tools()}


class LibraryFeed:
    """The daemon's view of its tool library: its size, what changed, and the watcher.

    `on_change` is called on the event loop, once per change, never for a no-op reload.
    """

    def __init__(self, library: "ToolLibrary", on_change: Callable[[LibraryChange], None], *,
                 settle: float = 0.05) -> None:
        self.library = library
        self.on_change = on_change
        self.settle = settle  # seconds a burst of file events may take before one reload
        self._known = _active(library)
        self._watcher: LibraryWatcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def size(self) -> int:
        return len(self._known)

    def refresh(self) -> LibraryChange:
        """Report (to on_change) and return how the library moved since the last refresh."""
        now = _active(self.library)
        change = diff_tools(self._known, now, self.library.version)
        self._known = now
        if change:
            self.on_change(change)
        return change

    async def reload(self) -> LibraryChange:
        """Re-read the library now (file I/O in a worker thread), then refresh."""
        await asyncio.to_thread(self.library.reload)
        return self.refresh()

    # ------------------------------------------------------------ watching

    async def start(self) -> None:
        """Watch the library's directories until `stop`; call from the daemon's loop."""
        from coagent_cli.tools.watcher import LibraryWatcher

        self._loop = asyncio.get_running_loop()
        self._watcher = LibraryWatcher(self.library, self._reloaded, settle=self.settle)
        await asyncio.to_thread(self._start_watching, self._watcher)

    def _start_watching(self, watcher: "LibraryWatcher") -> None:
        # A layer directory that does not exist is watched through its nearest ancestor;
        # for the workspace layer that is `.coagent/`, where the journal is written on
        # every op, and each write would cost a reload. Its own directory avoids that.
        for layer, directory in self.library.layers:
            if layer == "workspace":
                try:
                    directory.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    log.warning("cannot create %s (watching its parent instead): %s", directory, exc)
        watcher.start()

    async def stop(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await asyncio.to_thread(watcher.stop)

    def _reloaded(self, library: "ToolLibrary") -> None:
        """The watcher's thread: hand the news to the loop (refresh runs there)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self.refresh)
        except RuntimeError:  # the loop closed meanwhile: the daemon is gone
            pass
