"""Protocol-faithful Asterisk simulator (AMI over TCP, ARI over HTTP/websocket, RTP over UDP).

``from earpiece.sim import Simulator, load_scenario`` (imported lazily, so that the CLI can
import :mod:`earpiece.sim.cmd` cheaply).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from earpiece.sim.faults import Faults
    from earpiece.sim.scenario import Scenario, load_scenario
    from earpiece.sim.simulator import Simulator

__all__ = ["Faults", "Scenario", "Simulator", "load_scenario"]


def __getattr__(name: str) -> Any:
    if name == "Simulator":
        from earpiece.sim.simulator import Simulator

        return Simulator
    if name in ("Scenario", "load_scenario"):
        from earpiece.sim import scenario

        return getattr(scenario, name)
    if name == "Faults":
        from earpiece.sim.faults import Faults

        return Faults
    raise AttributeError(f"module 'earpiece.sim' has no attribute {name!r}")
