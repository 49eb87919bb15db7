"""The dialer pattern over Local channels: ``Originate Local/<exten>@customers`` into
``[dialer] agent``. When ``;2`` answers, ``;1`` runs ``dialer,agent`` (NoOp, Dial) and
``Dial()``s an agent into a basic bridge, like the PJSIP customer of
:mod:`~earpiece.sim.pjsip_calls`; how such a call ends (``;2`` hangs up, or ``core restart``)
follows ``shared/asterisk/captures/faults/*/local_dialer_answered`` and ``core_restart``.

:class:`LocalDialer` is handed to :class:`~earpiece.sim.local_calls.LocalCalls` by the engine
(``engine.local.dialer``), so that ``local_calls`` needs no import of the PJSIP layer.
"""

from __future__ import annotations

import asyncio
import time

from earpiece.sim.model import Channel, OriginateOutcome, OriginateRequest
from earpiece.sim.pjsip_calls import CHANNEL_LIMIT_VARS, Call, PjsipCalls


class LocalDialer:
    """The agent leg of Local dialer originates, keyed by the ``;1`` channel's id."""

    def __init__(self, engine: PjsipCalls) -> None:
        self.engine = engine
        self.calls: dict[str, Call] = {}

    def wants(self, req: OriginateRequest) -> bool:
        """An Originate into the scenario's dialer context (no application, no ARI app)."""
        plan = self.engine.scenario.dialplan
        return (not req.application and not req.app and req.context == plan.context
                and req.exten == plan.exten)

    async def dial(self, one: Channel, two: Channel, req: OriginateRequest,
                   outcome: OriginateOutcome) -> None:
        """``;1`` (answered) runs ``[dialer] agent``: NoOp, Dial(PJSIP/<agent>,<timeout>)."""
        e = self.engine
        ep = e.scenario.endpoint(two.exten)
        agent_ep = e._pick_agent()
        if ep is None:
            return
        call = Call(req=req, endpoint=ep, outcome=outcome, customer=one)
        call.answered_at = call.dial_started = time.monotonic()
        e.calls.append(call)
        self.calls[one.id] = call
        one.context, one.exten, one.priority = req.context, req.exten, req.priority
        agent = agent_ep.name if agent_ep is not None else ""
        e._newexten(one, "NoOp", f"dialer: customer {one.caller_num} answered on {one.name}, "
                    f"connecting {agent}")
        one.priority += 1
        e._newexten(one, "Dial", f"PJSIP/{agent},{int(e.scenario.dialplan.dial_timeout_s)}")
        for name in CHANNEL_LIMIT_VARS:
            e.set_var(one, name, "")
        if agent_ep is not None:
            e.spawn(self._caller_to_two(two, agent_ep.name, agent_ep.callerid_name))
            await e._dial_agent(call, agent_ep)

    async def _caller_to_two(self, two: Channel, num: str, name: str) -> None:
        """The agent, now ``;1``'s connected line, becomes ``;2``'s caller id (~20 ms later)."""
        await asyncio.sleep(0.02)
        if two.hungup:
            return
        e = self.engine
        two.caller_num, two.caller_name = num, name
        e.ami("NewCallerid", "call", [*two.ami_block(), (
            "CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
        e._ari_ch("ChannelCallerId", two, before={
            "caller_presentation": 0,
            "caller_presentation_txt": "Presentation Allowed, Not Screened"})

    def end(self, one: Channel, two: Channel, *, restart: bool) -> bool:
        """``;2`` hung up (its dialplan ended, or ``core restart``): ``;1`` leaves the agent's
        bridge and Dial() hangs the agent up. False when ``;1`` dialled no agent."""
        call = self.calls.pop(one.id, None)
        if call is None or call.ended:
            return False
        e = self.engine
        call.ended = True
        ag, bridge = call.agent, call.bridge
        e._hangup_request(two, 16, soft=True, ami_event="SoftHangupRequest")
        e._hangup_request(one, 0 if restart else 16)
        if restart:
            self._gone(two, 0)
        if bridge is not None and ag is not None:
            for ch in (one, ag):
                e.set_var(ch, "BRIDGEPEER", "")
            e.set_var(one, "BRIDGEPVTCALLID", "")
            e._bridge_leave(bridge, one, technology="simple_bridge")
        self._dial_times(call, one)
        if not restart:
            e._hangup_request(one, 16, soft=True, ami_event="SoftHangupRequest")
        if ag is not None and not ag.hungup:
            if bridge is not None:
                e._bridge_leave(bridge, ag, technology="simple_bridge")
            e._qos_vars(ag, ag.state == 6)
            e._destroy_snoops_of(ag)
            e._hangup_final(ag, 16)
            e._snoops_hungup(ag)
            if bridge is not None:
                e._bridge_destroy(bridge, technology="simple_bridge")
            e._device_state(ag.device, "NOT_INUSE")
        elif bridge is not None:
            e._bridge_destroy(bridge)
        if restart:
            e._hangup_request(one, 16, soft=True, ami_event="SoftHangupRequest")
            self._gone(one, 16)
            for _ in range(2):
                e._device_state(one.device, "NOT_INUSE")
        else:
            for half in (two, one):
                self._gone(half, 16)
                e._device_state(half.device, "NOT_INUSE")
        call.outcome.hangup_cause = 16
        call.outcome.finished = True
        return True

    def _gone(self, ch: Channel, cause: int) -> None:
        """``Hangup`` of one Local half; its snoops go with it (``Cause: 0``, as captured)."""
        e = self.engine
        e._destroy_snoops_of(ch)
        e._hangup_final(ch, cause)
        for snoop in list(ch.snoops):
            if not snoop.hungup:
                e._hangup_final(snoop, 0)
                e._device_state(snoop.device, "INVALID")
        ch.snoops.clear()

    def _dial_times(self, call: Call, one: Channel) -> None:
        e = self.engine
        answered_ms = int((time.monotonic() - call.answered_at) * 1000)
        dialed_ms = int((time.monotonic() - call.dial_started) * 1000)
        e.set_var(one, "ANSWEREDTIME", str(answered_ms // 1000))
        e.set_var(one, "ANSWEREDTIME_MS", str(answered_ms))
        e.set_var(one, "DIALEDTIME", str(dialed_ms // 1000))
        e.set_var(one, "DIALEDTIME_MS", str(dialed_ms))
        e.set_var(one, "DIALSTATUS", "ANSWER")
