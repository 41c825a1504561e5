"""Rendering simulator results for people: a comparison table and a one-line verdict."""

from __future__ import annotations

from rich import box
from rich.table import Table

from coagent_cli.sim.simulator import SimReport


def comparison_table(reports: list[SimReport], *, title: str = "") -> Table:
    serial = next((r for r in reports if r.controller == "serial"), None)
    table = Table(title=title or None, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    # Short headers: the table must fit an 80-column CI log.
    for col in ("cc", "time", "speed", "=serial", "steps", "think", "notices", "undo/redo", "aborts", "waits"):
        table.add_column(col, justify="left" if col in ("cc", "=serial") else "right", no_wrap=True)
    for r in reports:
        s = r.stats
        speedup = f"{serial.makespan / r.makespan:.2f}x" if serial and r.makespan else "-"
        table.add_row(
            r.controller,
            f"{r.makespan}s",
            speedup,
            "yes" if r.correct else "NO",
            str(r.work),
            f"{r.think}s",
            str(s["notices"]),
            f"{s['undos']}/{s['redos']}",
            str(s["aborts"]),
            str(s["waits"] + s["holds"]),
        )
    return table
