"""The protocol core: MTPO and the baselines, pure state machines (no I/O, no clock).

Pick one by name with `make_controller("mtpo")`; every controller takes the same
events and emits the same kinds of actions (see `model`).
"""

from __future__ import annotations

from typing import Callable

from coagent_cli.core.engine import Engine
from coagent_cli.core.mtpo import MTPO
from coagent_cli.core.nocontrol import NoControl
from coagent_cli.core.occ import Optimistic
from coagent_cli.core.serial import Serial
from coagent_cli.core.twopl import TwoPhaseLocking
from coagent_cli.errors import UsageError

Controller = Engine

CONTROLLERS: dict[str, Callable[..., Engine]] = {
    "mtpo": MTPO,
    "2pl": TwoPhaseLocking,
    "occ": Optimistic,
    "serial": Serial,
    "none": NoControl,
}


def make_controller(name: str, *, collect_versions: bool = True) -> Engine:
    try:
        return CONTROLLERS[name](collect_versions=collect_versions)
    except KeyError:
        raise UsageError(f"unknown controller {name!r}; choose one of {', '.join(CONTROLLERS)}") from None
