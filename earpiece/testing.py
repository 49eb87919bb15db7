"""Public test doubles for Earpiece users: the protocol-faithful PBX simulator.

``Simulator`` speaks real AMI (TCP), ARI (HTTP + websocket) and RTP (UDP) like the Asterisk
22 recordings in ``shared/asterisk/captures``, driven by a scenario file; ``Faults`` injects
delays, dropped connections, restarts, malformed frames, RTP loss/reordering/jitter and a rogue
RTP sender. Example::

    from earpiece.testing import Faults, Simulator, load_scenario

    async with Simulator(load_scenario("twenty"), faults=Faults(rtp_loss=0.02)) as sim:
        ...  # point earpiece (or your own AMI/ARI client) at sim.ami_port / sim.ari_url
        await sim.restart_ami()          # the AMI listener bounces, calls stay up
        await sim.faults.pbx_restart()   # `core restart now`: calls gone, refused, 404, 503
        await sim.faults.pbx_restart(graceful=True, down_s=0.2)  # after the last call
"""

from __future__ import annotations

from earpiece.sim.faults import Faults, RestartPlan
from earpiece.sim.model import OriginateRequest
from earpiece.sim.scenario import Scenario, load_scenario
from earpiece.sim.simulator import Simulator

__all__ = ["Faults", "OriginateRequest", "RestartPlan", "Scenario", "Simulator",
           "load_scenario"]
