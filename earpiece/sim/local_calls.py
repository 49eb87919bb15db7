"""Local channels of the simulator: ``Local/<exten>@<context>`` pairs (``;1`` is the
originated half, ``;2`` runs ``exten``), as AMI and ARI originates create them.

``;2`` is scripted by the scenario endpoint named ``exten`` (answer: NoOp, Answer,
Playback.., Hangup; busy: Busy(10); congestion: Congestion(10); noanswer: Ringing, Wait(30);
no such endpoint: the bad-extension failure), or is the built-in ``whisper_src`` of the
pjsip captures (Answer, Wait(1), Playback(hello-world), Wait(0.5), Hangup). Event sequences
follow ``captures/ami/originate_*``, ``captures/ari/originate_via_ari`` and
``pjsip/ami/whisper``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Protocol

from earpiece.sim import audio
from earpiece.sim.model import (
    RINGING,
    UP,
    Channel,
    HeardEntry,
    OriginateOutcome,
    OriginateRequest,
)
from earpiece.sim.scenario import Say

if TYPE_CHECKING:
    from earpiece.sim.bridging import Bridging

log = logging.getLogger(__name__)
FAILING = ("invalid", "busy", "congestion")


class DialerLeg(Protocol):
    """What ``;1`` runs in ``[dialer] agent`` (:class:`~earpiece.sim.local_dialer.LocalDialer`)."""

    def wants(self, req: OriginateRequest) -> bool: ...

    async def dial(self, one: Channel, two: Channel, req: OriginateRequest,
                   outcome: OriginateOutcome) -> None: ...

    def end(self, one: Channel, two: Channel, *, restart: bool) -> bool: ...


class LocalCalls:
    """The Local-channel part of an :class:`~earpiece.sim.engine.Engine`."""

    def __init__(self, engine: Bridging) -> None:
        self.engine = engine
        self.dialer: DialerLeg | None = None

    async def run(self, req: OriginateRequest, outcome: OriginateOutcome,
                         done: asyncio.Future[bool],
                         pair: tuple[Channel, Channel] | None = None) -> None:
        """``Local/<exten>@<context>``: ``;2`` runs ``exten``, scripted by the endpoint of the
        same name (answer: NoOp, Answer, Playback.., Hangup; busy: Busy(10); congestion:
        Congestion(10); noanswer: Ringing, Wait(30)), or the built-in ``whisper_src``
        (Answer, Wait(1), Playback(hello-world), Wait(0.5), Hangup). Event sequences follow
        ``captures/ami/originate_*`` and ``pjsip/ami/whisper``."""
        try:
            await self._run(req, outcome, pair)
        finally:
            outcome.finished = True
            if not done.done():
                done.set_result(outcome.response == "Success")

    def _pair(self, req: OriginateRequest) -> tuple[Channel, Channel]:
        e = self.engine
        _, _, rest = req.channel.partition("/")
        exten, _, context = rest.partition("@")
        base = f"Local/{exten}@{context}-{next(e._local_seq):08x}"
        device = f"Local/{exten}@{context}"
        uid1 = req.channel_id or e.new_uniqueid()
        one = Channel(id=uid1, name=f"{base};1", tech="Local", context=context, exten=exten,
                      linkedid=uid1, role="local", device=device)
        two = Channel(id=req.other_channel_id or e.new_uniqueid(), name=f"{base};2",
                      tech="Local", state=4, context=context, exten=exten, linkedid=uid1,
                      role="local", device=device)
        one.call = two.call = (one, two)
        return one, two

    def _created(self, one: Channel, two: Channel) -> None:
        e = self.engine
        e._newchannel(one)
        e._newchannel(two)
        e._newexten(one, "AppDial2", "(Outgoing Line)")

    def ari_originate(self, req: OriginateRequest) -> Channel:
        """``POST /channels`` with ``endpoint=Local/<exten>@<context>``: returns ``;1``."""
        e = self.engine
        outcome = OriginateOutcome(
            action_id=None, dial_string=req.channel, endpoint=req.channel, scripted="",
            answered_by="", source="ari", started=time.monotonic())
        e.outcomes.append(outcome)
        one, two = self._pair(req)
        self._created(one, two)
        for half in (one, two):  # subscribed once created: no ChannelCreated (as captured)
            half.ari_apps.add(req.app)
        if req.callerid_num or req.callerid_name:
            one.caller_num, one.caller_name = req.callerid_num, req.callerid_name
            one.connected_num, one.connected_name = req.callerid_num, req.callerid_name
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        e.spawn(self.run(req, outcome, done, (one, two)))
        return one

    async def _run(self, req: OriginateRequest, outcome: OriginateOutcome,
                               pair: tuple[Channel, Channel] | None) -> None:
        e = self.engine
        if pair is None:
            one, two = self._pair(req)
        else:
            one, two = pair
        exten, context, device = one.exten, one.context, one.device
        ep = e.scenario.endpoint(exten)
        script = "whisper_src" if exten == "whisper_src" else (
            "invalid" if ep is None or ep.offline else
            {"decline": "busy", "sit": "busy", "unavailable": "noanswer"}.get(ep.outcome,
                                                                               ep.outcome))
        outcome.scripted = script if ep is None else ep.outcome
        outcome.answered_by = ep.answered_by if ep is not None else ""
        dialer = self.dialer is not None and self.dialer.wants(req)
        await asyncio.sleep(0.0005)
        if pair is None:
            self._created(one, two)
        if script in FAILING:
            # fails within a few ms, without media: a snoop on either half is refused (404)
            # even before ChannelDestroyed (captures/faults local_dialer_busy, ...)
            one.doomed = two.doomed = True
            await asyncio.sleep(0.002)
        if script == "invalid":
            if req.callerid_num or req.callerid_name:
                for half in (one, two):
                    self._callerid(half, req)
            e._hangup_final(two, 0)
            e._hangup_final(one, 0)
            e._originate_response(req, outcome, False, 0, None)
            e._device_state(device, "INVALID")
            e._device_state(device, "INVALID")
            return
        for half in (one, two):
            for name, value in req.variables:
                e.set_var(half, name, value)
            if req.callerid_num or req.callerid_name:
                self._callerid(half, req)
        e.ami("LocalBridge", "call", [*one.ami_block("LocalOne"),
                                          *two.ami_block("LocalTwo"),
                                          ("Context", context), ("Exten", exten),
                                          ("LocalOptimization", "Yes")])
        dialstring = f"{exten}@{context}"
        e._dial_event("DialBegin", one, None, None, dialstring)
        e._newexten(two, "NoOp", f"{script} case")
        two.priority = 2
        timeout_s = req.timeout_ms / 1000.0
        if script in ("busy", "congestion"):
            app = "Busy" if script == "busy" else "Congestion"
            e._newexten(two, app, "10")
            if script == "busy":
                e._newstate(two, 7)
                e._dial_event("DialEnd", one, "BUSY", None, dialstring)
            else:
                e._dial_event("DialEnd", one, "CONGESTION", None, dialstring)
                e._newstate(two, 7)
                e._device_state(device, "NOT_INUSE" if dialer else "INUSE")
            outcome.dial_status = "BUSY" if script == "busy" else "CONGESTION"
            e._hangup_request(two, 0)
            if script == "busy":
                e._hangup_request(two, 16, ami_event="SoftHangupRequest")
                e._hangup_final(one, 0)
                e._originate_response(req, outcome, False, 5, None)
                e._hangup_final(two, 17)
                outcome.hangup_cause = 17
                for state in ("INUSE", "NOT_INUSE", "NOT_INUSE") if dialer else ("NOT_INUSE",) * 3:
                    e._device_state(device, state)
            else:
                e._hangup_final(one, 0)
                e._hangup_request(two, 16, ami_event="SoftHangupRequest")
                e._hangup_final(two, 34)
                e._originate_response(req, outcome, False, 8, None)
                outcome.hangup_cause = 34
                for _ in range(2):
                    e._device_state(device, "NOT_INUSE")
            return
        if script == "noanswer":
            e._newexten(two, "Ringing", "")
            e._newstate(one, RINGING)
            two.priority = 3
            e._newexten(two, "Wait", "30")
            e._dial_event("DialState", one, "RINGING", None, dialstring)
            e._device_state(device, "INUSE")
            await asyncio.sleep(timeout_s)
            if one.hungup:
                return
            e._hangup_request(two, 19)
            e._originate_response(req, outcome, False, 3, None)
            e._hangup_final(one, 19)
            e._device_state(device, "NOT_INUSE")
            e._hangup_request(two, 16, ami_event="SoftHangupRequest")
            e._hangup_final(two, 19)
            e._device_state(device, "NOT_INUSE")
            outcome.hangup_cause = 19
            return
        # answered
        e._newexten(two, "Answer", "")
        e._newstate(two, UP)
        e._newstate(one, UP)
        e._dial_event("DialEnd", one, "ANSWER", None, dialstring)
        outcome.dial_status = "ANSWER"
        e._originate_response(req, outcome, True, 4, one)
        e._device_state(device, "INUSE")
        e._device_state(device, "INUSE")
        if req.app:
            e.enter_stasis(one, req.app, req.app_args, from_dialplan=False)
        elif req.application.lower() == "stasis":
            parts = req.data.split(",")
            e.enter_stasis(one, parts[0], parts[1:], from_dialplan=True)
        if dialer and self.dialer is not None:
            e.spawn(self.dialer.dial(one, two, req, outcome))
        spyee: Channel | None = None
        if req.application.lower() == "chanspy":
            prefix = req.data.split(",")[0]
            spyee = next((c for c in e._channels.values()
                          if c.name.startswith(prefix + "-") and not c.hungup), None)
        if script == "whisper_src":
            says: tuple[Say, ...] = (Say("hello-world", 1.0),)
            hangup_after = 1.0 + 1.40425 + 0.5
        else:
            assert ep is not None
            says = ep.says
            hangup_after = ep.hangup_after_s
        t_answer = time.monotonic()
        e.spawn(self._playbacks(one, two, says, t_answer, spyee))
        if spyee is not None:
            await asyncio.sleep(0.1)
            if not one.hungup and not spyee.hungup:
                e.ami("ChanSpyStart", "call", [*one.ami_block("Spyer"),
                                                  *spyee.ami_block("Spyee")])
        if hangup_after <= 0:
            return
        while not (one.hungup or two.hungup):
            left = t_answer + hangup_after - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(left, 0.05))
        if two.hungup:
            return
        two.priority += 1
        e._newexten(two, "Hangup", "")
        if self.dialer is not None and self.dialer.end(one, two, restart=False):
            return
        if one.hungup:  # ;1's dialplan ended first (e.g. the agent did not answer)
            e._hangup_request(two, 16, soft=True, ami_event="SoftHangupRequest")
            e._hangup_final(two, 16)
            e._device_state(device, "NOT_INUSE")
            return
        if spyee is not None:
            e.ami("ChanSpyStop", "call", [*one.ami_block("Spyer"),
                                             *spyee.ami_block("Spyee")])
        e._hangup_request(two, 16, ami_event="SoftHangupRequest")
        e._hangup_request(one, 16)
        e.leave_stasis(one)
        e._hangup_final(one, 16)
        e._hangup_final(two, 16)
        e._device_state(device, "NOT_INUSE")
        e._device_state(device, "NOT_INUSE")
        outcome.hangup_cause = 16

    async def _playbacks(self, one: Channel, two: Channel, says: tuple[Say, ...],
                               t_answer: float, spyee: Channel | None) -> None:
        """``;2`` plays its prompts; ``;1`` hears them, and a ChanSpy whisper on ``;1``
        passes them to the spied-on channel's party only."""
        e = self.engine
        for say in sorted(says, key=lambda s: s.at_s):
            await asyncio.sleep(max(0.0, t_answer + say.at_s - time.monotonic()))
            if two.hungup:
                return
            try:
                pcm = audio.load_sound(say.wav)
            except (audio.SoundNotFoundError, ValueError) as exc:
                log.warning("scenario prompt skipped: %s", exc)
                continue
            two.priority += 1
            e._newexten(two, "Playback", say.wav)
            now = e.sample_now()
            two.voice.add(now, pcm, say.wav)
            if spyee is not None and not spyee.hungup:
                spyee.whisper.add(now, pcm, say.wav)
                e.heard.append(HeardEntry(spyee.name, spyee.role, say.wav, time.monotonic()))
            await asyncio.sleep(len(pcm) / audio.SAMPLE_RATE)
            if two.hungup:
                return
            e.set_var(two, "PLAYBACKSTATUS", "SUCCESS")

    def _callerid(self, half: Channel, req: OriginateRequest) -> None:
        e = self.engine
        one_half = half.name.endswith(";1")
        half.caller_num, half.caller_name = req.callerid_num, req.callerid_name
        if not one_half:
            half.connected_num, half.connected_name = req.callerid_num, req.callerid_name
        e.ami("NewCallerid", "call", [*half.ami_block(), (
            "CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
        e._ari_ch("ChannelCallerId", half, before={
            "caller_presentation": 0,
            "caller_presentation_txt": "Presentation Allowed, Not Screened"})
        half.connected_num, half.connected_name = req.callerid_num, req.callerid_name
        e.ami("NewConnectedLine", "call", half.ami_block())
        e._ari_ch("ChannelConnectedLine", half)

    def hangup(self, ch: Channel, cause: int) -> None:
        e = self.engine
        pair = ch.call if isinstance(ch.call, tuple) else (ch,)
        if len(pair) == 2 and self.dialer is not None and not pair[1].hungup \
                and self.dialer.end(pair[0], pair[1], restart=False):
            return
        for half in pair:
            if half.hungup:
                continue
            e._hangup_request(half, cause)
            if half.bridge is not None:
                e._bridge_leave(half.bridge, half)
            e.leave_stasis(half)
            e._destroy_snoops_of(half)
        for half in pair:
            if not half.hungup:
                e._hangup_final(half, cause)
                e._snoops_hungup(half)
        if pair:
            for _ in pair:
                e._device_state(pair[0].device, "NOT_INUSE")
