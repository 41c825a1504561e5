"""The monitor: a live view of one daemon run, fed by its snapshot and event stream.

    render.py   pure functions from a `wire.Snapshot` (+ recent events, + the time) to
                rich renderables and plain text lines; no I/O, no clock reads
    view.py     `MonitorState` (folds events into the snapshot, keeps a bounded feed)
                and `run_view`, the loop that draws it with rich.Live or plain lines
    cli.py      `monitor_cmd`, the typer command `coagent monitor`
    sample.py   a frozen three-agent run; renders docs/monitor-sample.txt
"""
