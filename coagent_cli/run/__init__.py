"""`coagent run` and `coagent demo`: a run plan launched around an in-process daemon.

    plan.py         the typed run plan (YAML), its one-line errors
    environment.py  DaemonEnvironment: the agents' Environment over the daemon's socket
    launcher.py     Launcher: the daemon thread, built-in and external agents, directives,
                    quiescence, the time limit, the report's counters
    report.py       AgentReport, RunReport: JSON and a table
    demo.py         the offline demo: a sample repository, three scripted agents, MTPO
                    against serial, final trees compared
    cli.py          the typer commands `run_cmd` and `demo_cmd`
"""
