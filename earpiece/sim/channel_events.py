"""The base layer of the simulator's engine: the state every part of it shares (live channels,
bridges and playbacks, tasks, the 8 kHz sample clock) and the AMI and ARI events that announce
a channel's changes (``Newchannel``/``ChannelCreated``, ``Newexten``/``ChannelDialplan``,
``VarSet``/``ChannelVarset``, ``Newstate``, device states, ``Dial*``, ``OriginateResponse``,
hangup requests, ``Hangup``/``ChannelDestroyed``, ``StasisStart``/``StasisEnd``).

Headers and JSON follow ``shared/asterisk/captures/pjsip``. Listeners (the AMI and ARI
servers) turn what is emitted into bytes; :class:`~earpiece.sim.engine.Engine` sets the state
up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

from earpiece.agi.ami_message import AmiMessage
from earpiece.sim import audio
from earpiece.sim.model import (
    CAUSE_TXT,
    Bridge,
    Channel,
    HeardEntry,
    OriginateOutcome,
    OriginateRequest,
    Playback,
    wall_ts,
)
from earpiece.sim.scenario import Scenario

log = logging.getLogger(__name__)

AmiListener = Callable[[AmiMessage], None]
AriListener = Callable[[dict[str, Any], set[str]], None]


class MediaHub:
    """What the engine needs from the RTP side (implemented by rtp_sender.RtpSender)."""

    def open_stream(self, channel: Channel, source: Callable[[int, int], Any],
                    sink: Callable[[int, Any], None] | None = None) -> int:
        """Start sending ``source``'s audio; RTP arriving on the channel's port is decoded and
        handed to ``sink(sample, pcm)`` (what the bridge's other members then hear)."""
        raise NotImplementedError

    def close_stream(self, channel: Channel) -> None:
        raise NotImplementedError


class ChannelEvents:
    """Shared state, clock, tasks, lookups and channel events of an engine."""

    # set up by Engine.__init__
    scenario: Scenario
    media: MediaHub | None
    host: str
    asterisk_id: str
    rng: random.Random
    ami_listeners: list[AmiListener]
    ari_listeners: list[AriListener]
    outcomes: list[OriginateOutcome]
    heard: list[HeardEntry]
    messages: list[dict[str, str]]
    texts: list[tuple[str, str]]
    _channels: dict[str, Channel]
    _bridges: dict[str, Bridge]
    _playbacks: dict[str, Playback]
    _tasks: set[asyncio.Task[Any]]
    _chan_seq: itertools.count[int]
    _snoop_seq: itertools.count[int]
    _local_seq: itertools.count[int]
    _uid_seq: itertools.count[int]
    _agent_rr: itertools.count[int]
    _t0: float
    started_wall: float
    device_states: dict[str, str]
    _stopping: bool
    shutting_down: bool  # `core restart` issued: the dialer stops, AMI Originate is refused
    fully_booted: bool  # False while the simulated Asterisk boots (no FullyBooted at login)

    # --- clock -----------------------------------------------------------------------------
    def sample_now(self) -> int:
        return round((time.monotonic() - self._t0) * audio.SAMPLE_RATE)

    def sample_at(self, t_mono: float) -> int:
        return round((t_mono - self._t0) * audio.SAMPLE_RATE)

    # --- lifecycle -------------------------------------------------------------------------
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
