"""The simulator's PBX engine: originates and runs calls, snoops, externalMedia channels and
bridges, and emits the AMI events and ARI events a real Asterisk 22 (chan_pjsip) sends.

Event sequences, header sets and values follow ``shared/asterisk/captures/pjsip`` (dialer
pattern: the customer is originated into ``dialer,agent``, which ``Dial()``s the agent;
``OriginateResponse`` Success/4 when the customer answers). The engine is transport-free: the
AMI and ARI servers register listeners and turn what it emits into bytes, so restarting a
listener never touches a live call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np

from earpiece.agi.ami_message import AmiMessage
from earpiece.sim import audio, noise
from earpiece.sim.local_calls import LocalCalls
from earpiece.sim.model import (
    CAUSE_TXT,
    RINGING,
    UP,
    AudioTrack,
    Bridge,
    Channel,
    HeardEntry,
    OriginateOutcome,
    OriginateRequest,
    Playback,
    wall_ts,
)
from earpiece.sim.scenario import Endpoint, Say, Scenario

log = logging.getLogger(__name__)

AmiListener = Callable[[AmiMessage], None]
AriListener = Callable[[dict[str, Any], set[str]], None]

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


class MediaHub:
    """What the engine needs from the RTP side (implemented by rtp_sender.RtpSender)."""

    def open_stream(self, channel: Channel, source: Callable[[int, int], Any]) -> int:
        raise NotImplementedError

    def close_stream(self, channel: Channel) -> None:
        raise NotImplementedError


class Engine:
    """Live calls of one simulated Asterisk."""

    def __init__(self, scenario: Scenario, *, media: MediaHub | None = None,
                 host: str = "127.0.0.1", rng: random.Random | None = None,
                 asterisk_id: str = "02:fc:00:00:00:01") -> None:
        self.scenario = scenario
        self.media = media
        self.host = host
        self.asterisk_id = asterisk_id
        self.rng = rng or random.Random()
        self.ami_listeners: list[AmiListener] = []
        self.ari_listeners: list[AriListener] = []
        self.outcomes: list[OriginateOutcome] = []
        self.heard: list[HeardEntry] = []
        self.messages: list[dict[str, str]] = []  # MessageSend deliveries
        self.texts: list[tuple[str, str]] = []  # SendText (channel, message)
        self.calls: list[Call] = []
        self._channels: dict[str, Channel] = {}
        self._bridges: dict[str, Bridge] = {}
        self._playbacks: dict[str, Playback] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._chan_seq = itertools.count(0x0C)
        self._snoop_seq = itertools.count(1)
        self._local_seq = itertools.count(1)
        self._uid_seq = itertools.count(1)
        self._agent_rr = itertools.count()
        self._t0 = time.monotonic()
        self.started_wall = time.time()
        self.device_states: dict[str, str] = {}
        self._stopping = False
        self.local = LocalCalls(self)

    # --- clock -----------------------------------------------------------------------------
    def sample_now(self) -> int:
        return round((time.monotonic() - self._t0) * audio.SAMPLE_RATE)

    def sample_at(self, t_mono: float) -> int:
        return round((t_mono - self._t0) * audio.SAMPLE_RATE)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self.scenario.dialer.enabled and self.scenario.dialer.calls:
            self.spawn(self._run_dialer())

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.media is not None:
            for ch in list(self._channels.values()):
                if ch.tech == "UnicastRTP":
                    self.media.close_stream(ch)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("simulator task failed", exc_info=task.exception())

    # --- lookups ---------------------------------------------------------------------------
    def channels(self) -> list[Channel]:
        return list(self._channels.values())

    def bridges(self) -> list[Bridge]:
        return list(self._bridges.values())

    def channel(self, id_or_name: str) -> Channel | None:
        ch = self._channels.get(id_or_name)
        if ch is not None:
            return ch
        for ch in self._channels.values():
            if ch.name == id_or_name:
                return ch
        return None

    def bridge(self, bridge_id: str) -> Bridge | None:
        return self._bridges.get(bridge_id)

    def playback(self, playback_id: str) -> Playback | None:
        return self._playbacks.get(playback_id)

    # --- emission --------------------------------------------------------------------------
    def ami(self, event: str, privilege: str, headers: list[tuple[str, str]]) -> None:
        msg = AmiMessage((("Event", event), ("Privilege", f"{privilege},all"), *headers))
        for listener in list(self.ami_listeners):
            listener(msg)

    def ari(self, event: dict[str, Any], apps: set[str]) -> None:
        for listener in list(self.ari_listeners):
            listener(event, apps)

    def _ari_ch(self, type_: str, ch: Channel, before: dict[str, Any] | None = None,
                after: dict[str, Any] | None = None, lead: dict[str, Any] | None = None) -> None:
        ev: dict[str, Any] = dict(lead or {})
        ev["type"] = type_
        ev["timestamp"] = wall_ts()
        if before:
            ev.update(before)
        ev["channel"] = ch.ari_json()
        if after:
            ev.update(after)
        self.ari(ev, ch.apps())

    def _newchannel(self, ch: Channel) -> None:
        self._channels[ch.id] = ch
        self.ami("Newchannel", "call", ch.ami_block())
        self._ari_ch("ChannelCreated", ch)

    def _newexten(self, ch: Channel, app: str, data: str, *, ari: bool = True) -> None:
        ch.app, ch.app_data = app, data
        self.ami("Newexten", "dialplan",
                 [*ch.ami_block(), ("Extension", ch.exten), ("Application", app),
                  ("AppData", data)])
        if ari:
            self._ari_ch("ChannelDialplan", ch,
                         before={"dialplan_app": app, "dialplan_app_data": data})

    def set_var(self, ch: Channel, name: str, value: str) -> None:
        ch.variables[name] = value
        self.ami("VarSet", "dialplan", [*ch.ami_block(), ("Variable", name), ("Value", value)])
        self._ari_ch("ChannelVarset", ch, lead={"variable": name, "value": value})

    def _newstate(self, ch: Channel, state: int) -> None:
        ch.state = state
        self.ami("Newstate", "call", ch.ami_block())
        self._ari_ch("ChannelStateChange", ch)

    def _device_state(self, device: str, state: str) -> None:
        self.device_states[device] = state
        self.ami("DeviceStateChange", "call", [("Device", device), ("State", state)])
        self.ari({"type": "DeviceStateChanged", "application": "", "timestamp": wall_ts(),
                  "device_state": {"name": device, "state": state}}, set())

    def _dial_event(self, ami_event: str, dest: Channel, status: str | None,
                    caller: Channel | None, dialstring: str) -> None:
        headers: list[tuple[str, str]] = []
        if caller is not None:
            headers += caller.ami_block()
        headers += dest.ami_block("Dest")
        if ami_event == "DialBegin":
            headers.append(("DialString", dialstring))
        else:
            headers.append(("DialStatus", status or ""))
        self.ami(ami_event, "call", headers)
        ev: dict[str, Any] = {"type": "Dial", "timestamp": wall_ts(),
                              "dialstatus": status or "", "forward": "",
                              "dialstring": dialstring}
        if caller is not None:
            ev["caller"] = caller.ari_json()
        ev["peer"] = dest.ari_json()
        apps = dest.apps() | (caller.apps() if caller is not None else set())
        self.ari(ev, apps)

    def _hangup_request(self, ch: Channel, cause: int, tech_cause: int | None = None,
                        *, soft: bool = False, ami_event: str = "HangupRequest") -> None:
        headers = [*ch.ami_block(), ("Cause", str(cause))]
        if tech_cause is not None:
            headers.append(("TechCause", str(tech_cause)))
        self.ami(ami_event, "call", headers)
        lead: dict[str, Any] = {"cause": cause}
        if tech_cause is not None:
            lead["tech_cause"] = tech_cause
        if soft:
            lead["soft"] = True
        self._ari_ch("ChannelHangupRequest", ch, lead=lead)

    def _hangup_final(self, ch: Channel, cause: int, tech_cause: int | None = None) -> None:
        """``Hangup`` / ``ChannelDestroyed`` and removal from the live list."""
        if ch.hungup:
            return
        ch.hungup = True
        ch.voice.clear_from(self.sample_now())
        headers = [*ch.ami_block(), ("Cause", str(cause)),
                   ("Cause-txt", CAUSE_TXT.get(cause, "Unknown"))]
        if tech_cause is not None:
            headers.append(("TechCause", str(tech_cause)))
        self.ami("Hangup", "call", headers)
        after: dict[str, Any] = {}
        self._channels.pop(ch.id, None)
        destroyed: dict[str, Any] = {"cause": cause,
                                     "cause_txt": CAUSE_TXT.get(cause, "Unknown")}
        if tech_cause is not None:
            destroyed["tech_cause"] = tech_cause
        ev: dict[str, Any] = {"type": "ChannelDestroyed", "timestamp": wall_ts(), **destroyed,
                              "channel": ch.ari_json(), **after}
        self.ari(ev, ch.apps())
        if ch.tech == "UnicastRTP" and self.media is not None:
            self.media.close_stream(ch)

    # --- Stasis ----------------------------------------------------------------------------
    def enter_stasis(self, ch: Channel, app: str, args: list[str], *,
                     from_dialplan: bool) -> None:
        """``StasisStart``. The ``STASISSTATUS`` VarSet before it reaches only apps already
        subscribed to the channel (ARI-created channels), as recorded."""
        data = ",".join([app, *args])
        if ch.tech != "Snoop":
            ch.app, ch.app_data = "Stasis", data
        self.set_var(ch, "STASISSTATUS", "")
        ch.stasis_app = app
        ch.stasis_from_dialplan = from_dialplan
        self._ari_ch("StasisStart", ch, before={"args": list(args)})

    def leave_stasis(self, ch: Channel) -> None:
        """``StasisEnd``. Snoops and channels that entered Stasis from the dialplan lose the
        app's subscription with it (no later VarSet/``ChannelDestroyed`` for that app);
        channels the app created keep it."""
        if ch.stasis_app is None:
            return
        ev = {"type": "StasisEnd", "timestamp": wall_ts(), "channel": ch.ari_json()}
        self.ari(ev, ch.apps())
        app = ch.stasis_app
        ch.stasis_app = None
        if ch.stasis_from_dialplan or ch.tech == "Snoop":
            ch.ari_apps.discard(app)
        self.set_var(ch, "STASISSTATUS", "SUCCESS")

    # --- ids -------------------------------------------------------------------------------
    def new_uniqueid(self) -> str:
        return f"{int(time.time())}.{next(self._uid_seq)}"

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

    def _originate_response(self, req: OriginateRequest, outcome: OriginateOutcome,
                            success: bool, reason: int, ch: Channel | None) -> None:
        outcome.response = "Success" if success else "Failure"
        outcome.reason = reason
        outcome.uniqueid = ch.id if (success and ch is not None) else "<unknown>"
        outcome.channel = ch.name if (success and ch is not None) else req.channel
        headers: list[tuple[str, str]] = []
        if req.action_id is not None:
            headers.append(("ActionID", req.action_id))
        headers += [("Response", outcome.response), ("Channel", outcome.channel)]
        if req.application:
            headers += [("Application", req.application), ("Data", req.data)]
        else:
            headers += [("Context", req.context), ("Exten", req.exten)]
        headers += [("Reason", str(reason)), ("Uniqueid", outcome.uniqueid),
                    ("CallerIDNum", req.callerid_num or "<unknown>"),
                    ("CallerIDName", req.callerid_name or "<unknown>")]
        if req.is_async and req.source != "ari":
            self.ami("OriginateResponse", "call", headers)

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

    def _qos_vars(self, ch: Channel, had_media: bool, bridged: Channel | None = None) -> None:
        """``RTPAUDIOQOS*`` VarSets a PJSIP channel with media reports as it hangs up."""
        if not had_media:
            return
        for name, value in noise.qos_values(self.rng, ch).items():
            self.set_var(ch, name, value)
            if bridged is not None and not bridged.hungup:
                self.set_var(bridged, f"{name}BRIDGED", value)

    def start_rtcp(self, ch: Channel) -> None:
        """PJSIP channels report RTCP on AMI (``RTCPReceived``/``RTCPSent``) once media flows:
        a receiver report at once, then sender reports every 5 s, as in the pjsip captures."""
        if ch.tech == "PJSIP" and not ch.rtcp:
            ch.rtcp = True
            self.spawn(self._rtcp_loop(ch))

    async def _rtcp_loop(self, ch: Channel) -> None:
        stream = noise.RtcpReports(self.rng)
        self.ami("RTCPReceived", "reporting", [*ch.ami_block(),
                                               *stream.headers("RTCPReceived", sr=False)])
        while not ch.hungup:
            await asyncio.sleep(5.0)
            if ch.hungup:
                return
            for event in ("RTCPReceived", "RTCPSent"):
                self.ami(event, "reporting", [*ch.ami_block(), *stream.headers(event, sr=True)])

    # --- audio -----------------------------------------------------------------------------
    def _place_says(self, ch: Channel, says: tuple[Say, ...], t0: float) -> None:
        for say in says:
            try:
                pcm = audio.load_sound(say.wav)
            except (audio.SoundNotFoundError, ValueError) as exc:
                log.warning("scenario prompt skipped: %s", exc)
                continue
            ch.voice.add(self.sample_at(t0 + say.at_s), pcm, say.wav)

    def _start_early_media(self, ch: Channel, kind: str, ep: Endpoint) -> None:
        start = self.sample_now()
        length = max(0.0, ep.ring_s - ep.early_media_after_s) + 1.0
        if kind == "ringback":
            ch.voice.add(start, audio.ringback(length), "ringback")
        elif kind == "busy":
            ch.voice.add(start, audio.busy_tone(length), "busy")
        elif kind == "sit":
            sit = audio.sit_tones()
            ch.voice.add(start, sit, "sit")
            try:
                ann = audio.load_sound("ss-noservice")
                ch.voice.add(start + len(sit), ann, "ss-noservice")
            except audio.SoundNotFoundError:
                log.warning("ss-noservice prompt not installed")

    @staticmethod
    def _local_partner(ch: Channel) -> Channel | None:
        if ch.tech == "Local" and isinstance(ch.call, tuple):
            return next((half for half in ch.call if half is not ch), None)
        return None

    def sent_by(self, ch: Channel, start: int, n: int,
                out: np.ndarray[Any, np.dtype[np.int32]]) -> None:
        """What ``ch`` sends into Asterisk: a phone's party's voice; for a Local half, what
        comes through the Local pair from its other half (``captures/rtp/snoop_direction``:
        ``spy=in`` on ``;1`` carried the prompt ``;2`` played)."""
        partner = self._local_partner(ch)
        if partner is not None:
            partner.voice.read(start, n, out)
            partner.played.read(start, n, out)
            return
        ch.voice.read(start, n, out)

    def heard_by(self, ch: Channel, start: int, n: int,
                 out: np.ndarray[Any, np.dtype[np.int32]]) -> None:
        """What ``ch``'s party hears (what Asterisk sends to ``ch``): bridged peers' voices,
        whispers, playbacks on ``ch``."""
        if ch.bridge is not None and ch.bridge.bridge_class == "basic":
            for peer in ch.bridge.channels:
                if peer is not ch:
                    self.sent_by(peer, start, n, out)
        if ch.tech == "Local":
            ch.voice.read(start, n, out)  # a Local half's own dialplan Playback
        ch.whisper.read(start, n, out)
        ch.played.read(start, n, out)

    def snoop_audio(self, snoop: Channel, start: int, n: int,
                    out: np.ndarray[Any, np.dtype[np.int32]]) -> None:
        target = snoop.snoop_target
        if target is None or target.hungup:
            return
        if snoop.spy in ("in", "both"):
            self.sent_by(target, start, n, out)
        if snoop.spy in ("out", "both"):
            self.heard_by(target, start, n, out)

    def media_source(self, em: Channel) -> Callable[[int, int], Any]:
        """Audio an externalMedia channel sends: the mix of its bridge's other members."""

        def source(start: int, n: int) -> Any:
            bridge = em.bridge
            if em.hungup or bridge is None:
                return None
            members = [c for c in bridge.channels if c is not em]
            if not members:
                return None
            out = np.zeros(n, dtype=np.int32)
            for member in members:
                if member.tech == "Snoop":
                    self.snoop_audio(member, start, n, out)
                else:
                    self.sent_by(member, start, n, out)
            return np.clip(out, -32768, 32767).astype(np.int16)

        return source

    # --- bridges ---------------------------------------------------------------------------
    def create_bridge(self, bridge_id: str | None, name: str, app: str | None) -> Bridge:
        bridge = Bridge(id=bridge_id or str(uuid.uuid4()), bridge_class="stasis",
                        creator="Stasis", name=name, video_mode="talker")
        self._bridges[bridge.id] = bridge
        self.ami("BridgeCreate", "call", bridge.ami_block())
        # BridgeCreated reaches subscribeAll sockets only (as recorded)
        self.ari({"type": "BridgeCreated", "timestamp": wall_ts(),
                  "bridge": bridge.ari_json()}, set())
        if app:
            bridge.ari_apps.add(app)
        return bridge

    def _bridge_enter(self, bridge: Bridge, ch: Channel) -> None:
        if ch.bridge is not None and ch.bridge is not bridge:
            self._bridge_leave(ch.bridge, ch)
        bridge.channels.append(ch)
        ch.bridge = bridge
        if ch.tech == "Snoop" and bridge.bridge_class == "stasis":
            others = [c for c in bridge.channels if c is not ch]
            if others:
                ch.linkedid = others[0].linkedid or others[0].id
        self.ami("BridgeEnter", "call", [*bridge.ami_block(), *ch.ami_block()])
        ev = {"type": "ChannelEnteredBridge", "timestamp": wall_ts(),
              "bridge": bridge.ari_json(), "channel": ch.ari_json()}
        self.ari(ev, bridge.apps() | ch.apps())

    def bridge_add(self, bridge: Bridge, ch: Channel) -> None:
        self._bridge_enter(bridge, ch)
        if bridge.bridge_class == "stasis" and len(bridge.channels) >= 2:
            for member in bridge.channels:
                peer = next((c for c in bridge.channels if c is not member), None)
                if peer is not None and member.variables.get("BRIDGEPEER") != peer.name:
                    self.set_var(member, "BRIDGEPEER", peer.name)

    def _bridge_leave(self, bridge: Bridge, ch: Channel, technology: str | None = None) -> None:
        if ch not in bridge.channels:
            return
        if bridge.bridge_class == "stasis" and ch.variables.get("BRIDGEPEER"):
            self.set_var(ch, "BRIDGEPEER", "")
        bridge.channels.remove(ch)
        ch.bridge = None
        self.ami("BridgeLeave", "call", [*bridge.ami_block(technology), *ch.ami_block()])
        ev = {"type": "ChannelLeftBridge", "timestamp": wall_ts(),
              "bridge": bridge.ari_json(), "channel": ch.ari_json()}
        self.ari(ev, bridge.apps() | ch.apps())

    def bridge_remove(self, bridge: Bridge, ch: Channel) -> None:
        self._bridge_leave(bridge, ch)

    def _bridge_destroy(self, bridge: Bridge, technology: str | None = None) -> None:
        if bridge.destroyed:
            return
        for ch in list(bridge.channels):
            self._bridge_leave(bridge, ch, technology)
        bridge.destroyed = True
        self._bridges.pop(bridge.id, None)
        self.ami("BridgeDestroy", "call", bridge.ami_block(technology))
        self.ari({"type": "BridgeDestroyed", "timestamp": wall_ts(),
                  "bridge": bridge.ari_json()}, bridge.apps())

    def destroy_bridge(self, bridge: Bridge) -> None:
        self._bridge_destroy(bridge)

    # --- snoops ----------------------------------------------------------------------------
    def snoop(self, target: Channel, *, spy: str, whisper: str, app: str, app_args: str,
              snoop_id: str | None) -> Channel:
        sid = snoop_id or self.new_uniqueid()
        ch = Channel(id=sid, name=f"Snoop/{target.id}-{next(self._snoop_seq):08x}",
                     tech="Snoop", state=UP, linkedid=sid, device=f"Snoop/{target.id}",
                     role="snoop", spy=spy, whisper_dir=whisper, snoop_target=target)
        target.snoops.append(ch)
        self._newchannel(ch)
        spy_block = [*ch.ami_block("Spyer"), *target.ami_block("Spyee")]
        self.ami("ChanSpyStart", "call", spy_block)
        args = [app_args] if app_args else []
        self._newexten(ch, "Stasis", ",".join([app, *args]))
        self.enter_stasis(ch, app, args, from_dialplan=False)
        return ch

    def _destroy_snoops_of(self, target: Channel) -> None:
        """Before the target's Hangup: its snoops leave their bridges and Stasis."""
        for snoop in list(target.snoops):
            if snoop.hungup:
                continue
            if snoop.bridge is not None:
                self._bridge_leave(snoop.bridge, snoop)
            self.leave_stasis(snoop)
            self.ami("ChanSpyStop", "call",
                     [*snoop.ami_block("Spyer"), *target.ami_block("Spyee")])

    def _snoops_hungup(self, target: Channel) -> None:
        for snoop in list(target.snoops):
            if snoop.hungup:
                continue
            self._hangup_final(snoop, 16)
            self._device_state(snoop.device, "INVALID")
        target.snoops.clear()

    def _hangup_snoop(self, snoop: Channel, *, by_request: bool) -> None:
        if by_request:
            self._hangup_request(snoop, 32, soft=True, ami_event="SoftHangupRequest")
        if snoop.bridge is not None:
            self._bridge_leave(snoop.bridge, snoop)
        self.leave_stasis(snoop)
        target = snoop.snoop_target
        if target is not None:
            self.ami("ChanSpyStop", "call",
                     [*snoop.ami_block("Spyer"), *target.ami_block("Spyee")])
            if snoop in target.snoops:
                target.snoops.remove(snoop)
        self._hangup_final(snoop, 16)
        self._device_state(snoop.device, "INVALID")

    # --- externalMedia ---------------------------------------------------------------------
    def external_media(self, *, app: str, external_host: str, fmt: str,
                       channel_id: str | None, variables: dict[str, str]) -> Channel:
        cid = channel_id or self.new_uniqueid()
        ch = Channel(id=cid, name=f"UnicastRTP/{external_host}-0x{self.rng.getrandbits(44):x}",
                     tech="UnicastRTP", linkedid=cid, device=f"UnicastRTP/{external_host}",
                     role="media", media_format=fmt, external_host=external_host)
        if self.media is not None:
            ch.local_port = self.media.open_stream(ch, self.media_source(ch))
        else:
            ch.local_port = 30000 + self.rng.randrange(1000) * 2
        self._newchannel(ch)
        self.set_var(ch, "UNICASTRTP_LOCAL_ADDRESS", self.host)
        self.set_var(ch, "UNICASTRTP_LOCAL_PORT", str(ch.local_port))
        for name, value in variables.items():
            self.set_var(ch, name, value)
        self._newexten(ch, "AppDial2", "(Outgoing Line)")
        ch.ari_apps.add(app)  # the app's own events start here (as recorded)
        dialstring = f"{external_host}/c({fmt})"
        self._dial_event("DialBegin", ch, None, None, dialstring)
        return ch

    def external_media_answer(self, ch: Channel, app: str) -> None:
        self._newstate(ch, UP)
        self._dial_event("DialEnd", ch, "ANSWER", None, f"{ch.external_host}/c({ch.media_format})")
        self._device_state(ch.device, "INUSE")
        self.enter_stasis(ch, app, [], from_dialplan=False)

    # --- playback --------------------------------------------------------------------------
    def play(self, target: Channel, media: list[str], playback_id: str | None,
             lang: str = "en") -> Playback:
        pb = Playback(id=playback_id or str(uuid.uuid4()), media=media, target=target,
                      language=lang)
        self._playbacks[pb.id] = pb
        self.spawn(self._run_playback(pb))
        return pb

    def _playback_event(self, type_: str, pb: Playback) -> None:
        self.ari({"type": type_, "timestamp": wall_ts(), "playback": pb.ari_json()},
                 pb.target.apps())

    async def _run_playback(self, pb: Playback) -> None:
        await asyncio.sleep(0)
        try:
            for i, uri in enumerate(pb.media):
                pb.index = i
                pb.state = "playing"
                self._playback_event("PlaybackStarted", pb)
                try:
                    pcm = audio.load_sound(uri.split(":", 1)[1] if ":" in uri else uri)
                except (audio.SoundNotFoundError, ValueError):
                    pb.state = "failed"
                    self._playback_event("PlaybackFinished", pb)
                    return
                self._inject(pb.target, pcm, uri)
                await asyncio.sleep(len(pcm) / audio.SAMPLE_RATE)
                if pb.target.hungup:
                    pb.state = "done"
                    self._playback_event("PlaybackFinished", pb)
                    return
                if i + 1 < len(pb.media):
                    pb.state = "continuing"
                    self._playback_event("PlaybackContinuing", pb)
            pb.state = "done"
            self._playback_event("PlaybackFinished", pb)
        finally:
            self._playbacks.pop(pb.id, None)

    def _inject(self, target: Channel, pcm: audio.Pcm, label: str) -> None:
        now = self.sample_now()
        if target.tech == "Snoop":
            spied = target.snoop_target
            if spied is None or spied.hungup:
                return
            if target.whisper_dir in ("out", "both"):  # to the snooped party only
                spied.whisper.add(now, pcm, label)
                self.heard.append(HeardEntry(spied.name, spied.role, label, time.monotonic()))
            if target.whisper_dir in ("in", "both"):  # as if the snooped party said it
                spied.voice.add(now, pcm, label)
                if spied.bridge is not None:
                    for peer in spied.bridge.channels:
                        if peer is not spied and peer.tech == "PJSIP":
                            self.heard.append(HeardEntry(peer.name, peer.role, label,
                                                         time.monotonic()))
            return
        target.played.add(now, pcm, label)
        self.heard.append(HeardEntry(target.name, target.role, label, time.monotonic()))

    # --- dialer ----------------------------------------------------------------------------
    async def _run_dialer(self) -> None:
        plan = self.scenario.dialer
        await asyncio.sleep(plan.start_after_s)
        name, num = parse_callerid(plan.callerid)
        for i, endpoint in enumerate(plan.calls, 1):
            if self._stopping:
                return
            self.originate(OriginateRequest(
                channel=f"PJSIP/{endpoint}", context=self.scenario.dialplan.context,
                exten=self.scenario.dialplan.exten, priority=1, callerid_name=name,
                callerid_num=num, timeout_ms=plan.timeout_ms,
                variables=[("SIM_CALL", str(i))], action_id=f"sim-dialer-{i}",
                source="dialer"))
            await asyncio.sleep(plan.spacing_s)

    # --- messages --------------------------------------------------------------------------
    def message_send(self, to: str, from_: str, body: str, content_type: str) -> bool:
        tech, _, dest = to.partition(":")
        if tech.lower() != "pjsip":
            return False
        ep = self.scenario.endpoint(dest.split("@")[0])
        if ep is None or ep.offline:
            return False
        self.messages.append({"to": to, "endpoint": ep.name, "from": from_, "body": body,
                              "content_type": content_type})
        return True


def parse_callerid(value: str) -> tuple[str, str]:
    """``"Dialer" <5000>`` / ``Dialer <5000>`` / ``5000`` -> (name, number)."""
    value = value.strip()
    if "<" in value and value.endswith(">"):
        name, _, num = value[:-1].partition("<")
        return name.strip().strip('"'), num.strip()
    if value.isdigit() or value.startswith("+"):
        return "", value
    return value.strip('"'), ""


__all__ = [
    "AudioTrack",
    "Call",
    "Engine",
    "HeardEntry",
    "MediaHub",
    "OriginateOutcome",
    "OriginateRequest",
    "parse_callerid",
]
