"""PJSIP calls of the simulator's engine: originates (AMI and ARI) of the scenario's
endpoints, scripted as ringing, early media, answer or a SIP failure; the dialer pattern (the
answered customer runs ``dialer,agent``, which ``Dial()``s an agent into a basic bridge); and
hangups, by either party, a scripted timer or a client (:meth:`PjsipCalls.hangup_channel` is
the entry point for every kind of channel).

Event sequences follow ``shared/asterisk/captures/pjsip`` (``OriginateResponse`` Success/4 when
the customer answers).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from earpiece.sim.bridging import Bridging
from earpiece.sim.model import (
    RINGING,
    UP,
    Bridge,
    Channel,
    OriginateOutcome,
    OriginateRequest,
    wall_ts,
)
from earpiece.sim.scenario import Endpoint

if TYPE_CHECKING:
    from earpiece.sim.local_calls import LocalCalls

# SIP final response per scripted outcome: (Q.850 cause, SIP code, DialEnd status)
FAILURES: dict[str, tuple[int, int, str]] = {
    "busy": (17, 486, "BUSY"),
    "decline": (21, 603, "NOANSWER"),
    "unavailable": (19, 480, "NOANSWER"),
    "congestion": (34, 503, "CONGESTION"),
    "sit": (1, 404, "NOANSWER"),
}
CHANNEL_LIMIT_VARS = ("DIALSTATUS", "DIALEDPEERNUMBER", "DIALEDPEERNAME", "ANSWEREDTIME",
                      "ANSWEREDTIME_MS", "DIALEDTIME", "DIALEDTIME_MS", "RINGTIME", "RINGTIME_MS",
                      "PROGRESSTIME", "PROGRESSTIME_MS")


@dataclass(eq=False)
class Call:
    req: OriginateRequest
    endpoint: Endpoint
    outcome: OriginateOutcome
    customer: Channel | None = None
    agent: Channel | None = None
    bridge: Bridge | None = None
    answered_at: float = 0.0
    dial_started: float = 0.0
    hangup_task: asyncio.Task[None] | None = None
    ended: bool = False


class PjsipCalls(Bridging):
    """Originates, the dialer's agent leg and hangups of an engine."""

    # set up by Engine.__init__
    calls: list[Call]
    local: LocalCalls

    # --- PJSIP channels --------------------------------------------------------------------
    def _new_pjsip(self, ep: Endpoint, linkedid: str = "") -> Channel:
        uid = self.new_uniqueid()
        ch = Channel(
            id=uid, name=f"PJSIP/{ep.name}-{next(self._chan_seq):08x}", tech="PJSIP",
            caller_num=ep.name, caller_name=ep.callerid_name, context="internal", exten="s",
            linkedid=linkedid or uid, device=f"PJSIP/{ep.name}", endpoint=ep.name,
            role=ep.role,
        )
        return ch

    # --- originate -------------------------------------------------------------------------
    def originate(self, req: OriginateRequest) -> asyncio.Future[bool]:
        """Start an originate; the future resolves True when it was answered (for sync AMI
        Originate)."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        tech, _, rest = req.channel.partition("/")
        ep_name = rest
        ep = self.scenario.endpoint(ep_name) if tech.upper() == "PJSIP" else None
        outcome = OriginateOutcome(
            action_id=req.action_id, dial_string=req.channel, endpoint=ep_name,
            scripted=(ep.outcome if ep is not None and ep.registered else "offline"),
            answered_by=ep.answered_by if ep is not None else "", source=req.source,
            started=time.monotonic())
        self.outcomes.append(outcome)
        if tech.lower() == "local":
            self.spawn(self.local.run(req, outcome, done))
            return done
        if ep is None or ep.offline:
            self.spawn(self._originate_failed_at_once(req, outcome, done))
            return done
        call = Call(req=req, endpoint=ep, outcome=outcome)
        self.calls.append(call)
        self.spawn(self._run_call(call, done))
        return done

    async def _originate_failed_at_once(self, req: OriginateRequest, outcome: OriginateOutcome,
                                        done: asyncio.Future[bool]) -> None:
        await asyncio.sleep(0.0002)
        self._originate_response(req, outcome, False, 0, None)
        outcome.finished = True
        if not done.done():
            done.set_result(False)

    async def _run_call(self, call: Call, done: asyncio.Future[bool]) -> None:
        try:
            await self._run_call_inner(call, done)
        finally:
            if not done.done():
                done.set_result(False)

    def _create_customer(self, call: Call) -> Channel:
        """Newchannel .. NewConnectedLine of the originated channel (before DialBegin)."""
        req, ep = call.req, call.endpoint
        ch = self._new_pjsip(ep)
        if req.channel_id:
            ch.id = req.channel_id
            ch.linkedid = req.channel_id
        ch.call = call
        call.customer = ch
        self._newchannel(ch)
        ch.protocol_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self._newexten(ch, "AppDial2", "(Outgoing Line)")
        for name, value in req.variables:
            self.set_var(ch, name, value)
        if req.callerid_num or req.callerid_name:
            ch.caller_num, ch.caller_name = req.callerid_num, req.callerid_name
            self.ami("NewCallerid", "call",
                     [*ch.ami_block(), ("CID-CallingPres",
                                        "0 (Presentation Allowed, Not Screened)")])
            self._ari_ch("ChannelCallerId", ch, before={
                "caller_presentation": 0,
                "caller_presentation_txt": "Presentation Allowed, Not Screened"})
            ch.connected_num, ch.connected_name = req.callerid_num, req.callerid_name
            self.ami("NewConnectedLine", "call", ch.ami_block())
            self._ari_ch("ChannelConnectedLine", ch)
        if req.app:  # ARI originate: the app's events start after the allocation (as Local)
            ch.ari_apps.add(req.app)
        return ch

    def ari_originate(self, req: OriginateRequest) -> Channel | None:
        """``POST /channels``: the channel exists when this returns (None: endpoint offline)."""
        tech, _, ep_name = req.channel.partition("/")
        ep = self.scenario.endpoint(ep_name) if tech.upper() == "PJSIP" else None
        if ep is None or ep.offline:
            return None
        outcome = OriginateOutcome(
            action_id=None, dial_string=req.channel, endpoint=ep_name, scripted=ep.outcome,
            answered_by=ep.answered_by, source="ari", started=time.monotonic())
        self.outcomes.append(outcome)
        call = Call(req=req, endpoint=ep, outcome=outcome)
        self.calls.append(call)
        ch = self._create_customer(call)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.spawn(self._run_call(call, done))
        return ch

    async def _run_call_inner(self, call: Call, done: asyncio.Future[bool]) -> None:
        req, ep, outcome = call.req, call.endpoint, call.outcome
        ch = call.customer if call.customer is not None else self._create_customer(call)
        call.dial_started = time.monotonic()
        self._dial_event("DialBegin", ch, None, None, ep.name)
        await asyncio.sleep(0.0015)
        t_invite = time.monotonic()
        early = ep.early_media if ep.early_media != "none" else (
            "sit" if ep.outcome == "sit" else "none")
        timeout_s = req.timeout_ms / 1000.0
        if early == "none":
            self._newstate(ch, RINGING)
            self._dial_event("DialState", ch, "RINGING", None, ep.name)
            self._device_state(ch.device, "RINGING")
        else:
            at = min(ep.early_media_after_s, timeout_s)
            await asyncio.sleep(max(0.0, t_invite + at - time.monotonic()))
            if at < timeout_s:
                self._dial_event("DialState", ch, "PROGRESS", None, ep.name)
                self._start_early_media(ch, early, ep)
                self.start_rtcp(ch)
        final_at = t_invite + ep.ring_s
        deadline = call.dial_started + timeout_s
        if ep.outcome == "noanswer" or final_at >= deadline:
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            if ch.hungup:
                return
            self._originate_response(req, outcome, False, 3, None)
            self._qos_vars(ch, early != "none")
            self._destroy_snoops_of(ch)
            self._hangup_final(ch, 19, 480)
            self._snoops_hungup(ch)
            if early == "none":
                self._device_state(ch.device, "NOT_INUSE")
            outcome.hangup_cause = 19
            outcome.finished = True
            return
        await asyncio.sleep(max(0.0, final_at - time.monotonic()))
        if ch.hungup:
            return
        if ep.outcome in FAILURES:
            cause, code, status = FAILURES[ep.outcome]
            self._qos_vars(ch, early != "none")
            self._hangup_request(ch, cause, code)
            self._dial_event("DialEnd", ch, status, None, ep.name)
            outcome.dial_status = status
            self._originate_response(req, outcome, False, 0, None)
            self._destroy_snoops_of(ch)
            self._hangup_final(ch, cause, code)
            self._snoops_hungup(ch)
            if early == "none":
                self._device_state(ch.device, "NOT_INUSE")
            outcome.hangup_cause = cause
            outcome.finished = True
            return
        # answered
        ch.voice.clear_from(self.sample_now())  # early media ends at the 200 OK
        self._newstate(ch, UP)
        self._dial_event("DialEnd", ch, "ANSWER", None, ep.name)
        outcome.dial_status = "ANSWER"
        self.start_rtcp(ch)
        call.answered_at = time.monotonic()
        self._place_says(ch, ep.says, call.answered_at)
        dialer = (not req.application and req.context == self.scenario.dialplan.context
                  and req.exten == self.scenario.dialplan.exten)
        agent_ep: Endpoint | None = None
        if dialer:
            agent_ep = self._pick_agent()
            ch.context, ch.exten, ch.priority = req.context, req.exten, req.priority
            self._newexten(ch, "NoOp", f"dialer: customer {ch.caller_num} answered on "
                           f"{ch.name}, connecting {agent_ep.name if agent_ep else ''}")
            ch.priority += 1
            timeout = int(self.scenario.dialplan.dial_timeout_s)
            self._newexten(ch, "Dial", f"PJSIP/{agent_ep.name if agent_ep else ''},{timeout}")
            for name in CHANNEL_LIMIT_VARS:
                self.set_var(ch, name, "")
        elif req.application:
            self._run_application(ch, req.application, req.data)
        self._device_state(ch.device, "INUSE")
        if req.app:
            self.enter_stasis(ch, req.app, req.app_args, from_dialplan=False)
        if req.source != "ari":
            self._originate_response(req, outcome, True, 4, ch)
        else:
            outcome.response, outcome.reason, outcome.uniqueid = "Success", 4, ch.id
            outcome.channel = ch.name
        if not done.done():
            done.set_result(True)
        if ep.hangup_after_s > 0:
            call.hangup_task = self.spawn(self._scripted_hangup(call))
        if dialer and agent_ep is not None:
            await self._dial_agent(call, agent_ep)

    def _run_application(self, ch: Channel, app: str, data: str) -> None:
        self._newexten(ch, app, data)
        if app.lower() == "stasis":
            parts = data.split(",")
            self.enter_stasis(ch, parts[0], parts[1:], from_dialplan=True)

    def _pick_agent(self) -> Endpoint | None:
        agents = [self.scenario.endpoint(a) for a in self.scenario.agents]
        usable = [a for a in agents if a is not None and not a.offline]
        if not usable:
            return None
        busy = {c.agent.endpoint for c in self.calls if c.agent is not None and not c.ended}
        free = [a for a in usable if a.name not in busy]
        pool = free or usable
        return pool[next(self._agent_rr) % len(pool)]

    async def _dial_agent(self, call: Call, agent_ep: Endpoint) -> None:
        cust = call.customer
        assert cust is not None
        ag = self._new_pjsip(agent_ep, linkedid=cust.linkedid)
        ag.call = call
        call.agent = ag
        call.outcome.agent_channel = ag.name
        self._newchannel(ag)
        ag.protocol_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self.set_var(ag, "DIALEDPEERNUMBER", agent_ep.name)
        ag.exten = cust.exten
        ag.connected_num, ag.connected_name = cust.caller_num, cust.caller_name
        self._newexten(ag, "AppDial", "(Outgoing Line)")
        self.ami("NewConnectedLine", "call", ag.ami_block())
        self._ari_ch("ChannelConnectedLine", ag)
        self._dial_event("DialBegin", ag, None, cust, agent_ep.name)
        cust.connected_num, cust.connected_name = ag.caller_num, ag.caller_name
        self.ami("NewConnectedLine", "call", cust.ami_block())
        self._ari_ch("ChannelConnectedLine", cust)
        await asyncio.sleep(0.001)
        if cust.hungup:
            self._hangup_final(ag, 16)
            return
        self.set_var(cust, "RINGTIME", "0")
        self.set_var(cust, "RINGTIME_MS", "1")
        self._dial_event("DialState", ag, "RINGING", cust, agent_ep.name)
        self._newstate(ag, RINGING)
        self._device_state(ag.device, "RINGING")
        timeout = self.scenario.dialplan.dial_timeout_s
        answered = agent_ep.outcome == "answer" and agent_ep.ring_s < timeout
        refused = agent_ep.outcome in FAILURES and agent_ep.ring_s < timeout
        await asyncio.sleep(agent_ep.ring_s if (answered or refused) else timeout)
        if cust.hungup or ag.hungup:
            return
        if not answered:
            cause, code, status = FAILURES[agent_ep.outcome] if refused else (19, None, "NOANSWER")
            if refused:
                self._hangup_request(ag, cause, code)
            self._dial_event("DialEnd", ag, status, cust, agent_ep.name)
            self._hangup_final(ag, cause, code)
            self._device_state(ag.device, "NOT_INUSE")
            self.set_var(cust, "DIALSTATUS", status)
            await self._dialplan_after_dial(call)
            return
        self._newstate(ag, UP)
        self.set_var(cust, "DIALSTATUS", "ANSWER")
        self.set_var(cust, "DIALEDPEERNAME", ag.name)
        self.set_var(cust, "DIALEDPEERNUMBER", agent_ep.name)
        self._dial_event("DialEnd", ag, "ANSWER", cust, agent_ep.name)
        self._device_state(ag.device, "INUSE")
        self.start_rtcp(ag)
        bridge = Bridge(id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                        bridge_class="basic", end_technology="native_rtp")
        self._bridges[bridge.id] = bridge
        call.bridge = bridge
        self.ami("BridgeCreate", "call", bridge.ami_block())
        self.ari({"type": "BridgeCreated", "timestamp": wall_ts(),
                  "bridge": bridge.ari_json()}, set())
        ag.exten = ""
        self._newexten(ag, "AppDial", "(Outgoing Line)")
        self._bridge_enter(bridge, ag)
        self._bridge_enter(bridge, cust)
        for a, b in ((cust, ag), (ag, cust)):
            self.set_var(a, "BRIDGEPEER", b.name)
            self.set_var(a, "BRIDGEPVTCALLID", str(uuid.UUID(int=self.rng.getrandbits(128),
                                                             version=4)))
        says = call.endpoint.agent_says or agent_ep.says
        self._place_says(ag, says, time.monotonic())

    async def _dialplan_after_dial(self, call: Call) -> None:
        cust = call.customer
        if cust is None or cust.hungup:
            return
        cust.priority += 1
        self._newexten(cust, "NoOp", f"DIALSTATUS={cust.variables.get('DIALSTATUS', '')} "
                       "HANGUPCAUSE=16")
        cust.priority += 1
        self._newexten(cust, "Hangup", "")
        await asyncio.sleep(0)
        self._end_call(call, cust, 16, by_request=False)

    async def _scripted_hangup(self, call: Call) -> None:
        ep = call.endpoint
        await asyncio.sleep(max(0.0, call.answered_at + ep.hangup_after_s - time.monotonic()))
        if call.ended:
            return
        party = call.agent if ep.hangup_by == "agent" and call.agent is not None \
            else call.customer
        if party is not None and not party.hungup:
            self.hangup_channel(party, 16)

    # --- hangups ---------------------------------------------------------------------------
    def hangup_channel(self, ch: Channel, cause: int, *, soft: bool = False) -> None:
        """A party or a client hangs ``ch`` up (BYE, AMI Hangup, ARI DELETE)."""
        if ch.hungup:
            return
        call: Call | None = ch.call
        if ch.tech == "Snoop":
            self._hangup_snoop(ch, by_request=True)
            return
        if ch.tech == "UnicastRTP":
            self._hangup_request(ch, 32, soft=True, ami_event="SoftHangupRequest")
            if ch.bridge is not None:
                self._bridge_leave(ch.bridge, ch)
            self.leave_stasis(ch)
            self._hangup_final(ch, 16)
            self._device_state(ch.device, "UNKNOWN")
            return
        if ch.tech == "Local":
            self.local.hangup(ch, cause)
            return
        if call is None:
            self._hangup_request(ch, cause, soft=soft)
            self.leave_stasis(ch)
            self._hangup_final(ch, cause)
            return
        if ch.state != UP and ch is call.customer:
            # cancelled before answer
            self._hangup_request(ch, cause, soft=soft)
            self._dial_event("DialEnd", ch, "CANCEL", None, call.endpoint.name)
            call.outcome.dial_status = "CANCEL"
            self._originate_response(call.req, call.outcome, False, 1, None)
            self._destroy_snoops_of(ch)
            self._hangup_final(ch, cause)
            self._snoops_hungup(ch)
            self._device_state(ch.device, "NOT_INUSE")
            call.outcome.hangup_cause = cause
            call.outcome.finished = True
            call.ended = True
            return
        self._end_call(call, ch, cause, by_request=True, soft=soft)

    def _end_call(self, call: Call, by: Channel, cause: int, *, by_request: bool,
                  soft: bool = False) -> None:
        if call.ended:
            return
        call.ended = True
        cust, ag, bridge = call.customer, call.agent, call.bridge
        other = ag if by is cust else cust
        self._qos_vars(by, True, bridged=other if bridge is not None else None)
        if by_request:
            self._hangup_request(by, cause, soft=soft)
        if by.stasis_app:
            self.leave_stasis(by)
        if bridge is not None and other is not None:
            for ch in (by, other):
                self.set_var(ch, "BRIDGEPEER", "")
                self.set_var(ch, "BRIDGEPVTCALLID", "")
            tech = "simple_bridge" if (by.snoops or other.snoops) else "native_rtp"
            self._bridge_leave(bridge, by, technology=tech)
            self._bridge_leave(bridge, other, technology=tech)
        if other is not None and not other.hungup:
            if other is ag:
                # the customer hung up: the agent leg is hung up by Dial()
                if other.state != UP and cust is not None:
                    self._dial_event("DialEnd", other, "CANCEL", cust, other.endpoint)
                self._qos_vars(other, other.state == UP)
                self._destroy_snoops_of(other)
                self._hangup_final(other, cause)
                self._snoops_hungup(other)
                if bridge is not None:
                    self._bridge_destroy(bridge, technology="native_rtp"
                                         if not (by.snoops or other.snoops) else None)
                if cust is not None:
                    answered_ms = int((time.monotonic() - call.answered_at) * 1000)
                    dialed_ms = int((time.monotonic() - call.dial_started) * 1000)
                    self.set_var(cust, "ANSWEREDTIME", str(answered_ms // 1000))
                    self.set_var(cust, "ANSWEREDTIME_MS", str(answered_ms))
                    self.set_var(cust, "DIALEDTIME", str(dialed_ms // 1000))
                    self.set_var(cust, "DIALEDTIME_MS", str(dialed_ms))
                    self.set_var(cust, "DIALSTATUS", "ANSWER")
                    self._hangup_request(cust, cause, ami_event="SoftHangupRequest")
                self._device_state(other.device, "NOT_INUSE")
                self._destroy_snoops_of(by)
                self._hangup_final(by, cause)
                self._snoops_hungup(by)
                self._device_state(by.device, "NOT_INUSE")
            else:
                # the agent hung up: the customer's dialplan continues after Dial()
                self._destroy_snoops_of(by)
                self._hangup_final(by, cause)
                self._snoops_hungup(by)
                if bridge is not None:
                    self._bridge_destroy(bridge)
                self._device_state(by.device, "NOT_INUSE")
                assert cust is not None
                self.set_var(cust, "DIALSTATUS", "ANSWER")
                cust.priority += 1
                self._newexten(cust, "NoOp", f"DIALSTATUS=ANSWER HANGUPCAUSE={cause}")
                cust.priority += 1
                self._newexten(cust, "Hangup", "")
                self._destroy_snoops_of(cust)
                self._hangup_final(cust, cause)
                self._snoops_hungup(cust)
                self._device_state(cust.device, "NOT_INUSE")
        else:
            if bridge is not None:
                self._bridge_destroy(bridge)
            self._destroy_snoops_of(by)
            self._hangup_final(by, cause)
            self._snoops_hungup(by)
            self._device_state(by.device, "NOT_INUSE")
        call.outcome.hangup_cause = cause
        call.outcome.finished = True
        if call.hangup_task is not None and call.hangup_task is not asyncio.current_task():
            call.hangup_task.cancel()
