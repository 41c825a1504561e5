"""Hot reload: watch the library's directories and reload when a spec file changes.

Filesystem events arrive on watchdog's thread; they only set a flag. A worker thread waits
for the flag, lets a burst of events settle (`settle` seconds), reloads, and calls
`on_change(library)` when the active set changed. A layer directory that does not exist yet
is watched through its nearest existing ancestor, and the watches are re-planned after each
burst, so creating `.coagent/tools/` later is noticed too.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

from coagent_cli.tools.library import ToolLibrary


class _Poke(FileSystemEventHandler):
    def __init__(self, wake: threading.Event) -> None:
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("opened", "closed_no_write"):
            self._wake.set()


class LibraryWatcher:
    def __init__(self, library: ToolLibrary, on_change: Callable[[ToolLibrary], None], *,
                 settle: float = 0.05) -> None:
        self.library = library
        self.on_change = on_change
        self.settle = settle
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._observer = Observer()
        self._watches: dict[Path, ObservedWatch] = {}
        self._worker = threading.Thread(target=self._run, name="tool-library-watcher",
                                        daemon=True)

    def start(self) -> "LibraryWatcher":
        self._plan_watches()
        self._observer.start()
        self._worker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._worker.is_alive():
            self._worker.join()
        if self._observer.is_alive():
            self._observer.stop()
            self._observer.join()

    def __enter__(self) -> "LibraryWatcher":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.wait(self.settle):
                return
            self._wake.clear()
            self._plan_watches()
            if self.library.reload():
                self.on_change(self.library)

    def _plan_watches(self) -> None:
        wanted = {_nearest_existing(d) for d in self.library.dirs}
        for gone in set(self._watches) - wanted:
            self._observer.unschedule(self._watches.pop(gone))
        for path in wanted - set(self._watches):
            self._watches[path] = self._observer.schedule(_Poke(self._wake), str(path),
                                                          recursive=False)


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.is_dir():
        path = path.parent
    return path
