"""What ``core restart now`` does to the simulated PBX's calls, and the fresh process after it.

As captured in ``shared/asterisk/captures/faults/{ami,ari}/core_restart``: within about 10 ms
every channel gets ``SoftHangupRequest`` ``Cause: 4`` (ARI ``ChannelHangupRequest``
``"cause":4,"soft":true``), then each call ends with cause 16 the way its dialplan ends it
(a PJSIP dialer customer: ``SoftHangupRequest`` 16 and ``Hangup`` 16, its agent ``Hangup`` 16;
a Local dialer call: ``;2`` ``SoftHangupRequest`` 16 and ``Hangup`` 0, ``;1``
``HangupRequest`` 0, ``SoftHangupRequest`` 16, ``Hangup`` 16). No ``StasisEnd`` for channels
that were not in Stasis. :func:`reset` is the restarted process: no channels, bridges or calls,
and the channel-name sequences and the Uniqueid counter start again at 0.
"""

from __future__ import annotations

import asyncio
import itertools
import time

from earpiece.sim.engine import Engine
from earpiece.sim.model import UP, Channel

SHUTDOWN_CAUSE = 4  # AST_CAUSE_... soft hangup for shutdown, as captured


def cancel_call_tasks(engine: Engine) -> None:
    """The running calls' scripts stop (the dialer too): nothing else happens to them."""
    current = asyncio.current_task()
    for task in list(engine._tasks):
        if task is not current:
            task.cancel()


def hangup_all(engine: Engine) -> None:
    """Hang every channel up as ``core restart now`` does."""
    e = engine
    for ch in e.channels():
        if not ch.hungup:
            e._hangup_request(ch, SHUTDOWN_CAUSE, soft=True, ami_event="SoftHangupRequest")
    for call in list(e.calls):
        cust = call.customer
        if call.ended or cust is None or cust.hungup or cust.tech != "PJSIP":
            continue
        if cust.state == UP:
            e._end_call(call, cust, 16, by_request=False)
        else:
            e.hangup_channel(cust, 16, soft=True)
    for ch in e.channels():
        if ch.hungup or ch.tech != "Local" or not ch.name.endswith(";1"):
            continue
        pair = ch.call if isinstance(ch.call, tuple) else (ch,)
        two = pair[1] if len(pair) == 2 else None
        if two is not None and not two.hungup and e.local_dialer.end(ch, two, restart=True):
            continue
        _local_pair(e, ch, two)
    for ch in e.channels():
        if not ch.hungup:
            _lone(e, ch)


def _local_pair(e: Engine, one: Channel, two: Channel | None) -> None:
    if two is not None and not two.hungup:
        e._hangup_request(two, 16, soft=True, ami_event="SoftHangupRequest")
        e._hangup_request(one, 0)
        e._destroy_snoops_of(two)
        e._hangup_final(two, 0)
        e._snoops_hungup(two)
    if one.bridge is not None:
        e._bridge_leave(one.bridge, one)
    e.leave_stasis(one)
    e._hangup_request(one, 16, soft=True, ami_event="SoftHangupRequest")
    e._destroy_snoops_of(one)
    e._hangup_final(one, 16)
    e._snoops_hungup(one)
    for _ in range(2 if two is not None else 1):
        e._device_state(one.device, "NOT_INUSE")


def _lone(e: Engine, ch: Channel) -> None:
    """Channels of no call: snoops, externalMedia, ARI-created leftovers."""
    if ch.tech == "Snoop":
        e._hangup_snoop(ch, by_request=False)
        return
    e._hangup_request(ch, 16, soft=True, ami_event="SoftHangupRequest")
    if ch.bridge is not None:
        e._bridge_leave(ch.bridge, ch)
    e.leave_stasis(ch)
    e._destroy_snoops_of(ch)
    e._hangup_final(ch, 16)
    e._snoops_hungup(ch)


def reset(engine: Engine) -> None:
    """The restarted Asterisk: empty, sequences at 0 (``-00000000``, ``<epoch>.0``)."""
    e = engine
    cancel_call_tasks(e)
    for ch in e.channels():  # none are left after hangup_all; be safe with media streams
        ch.hungup = True
        if ch.tech == "UnicastRTP" and e.media is not None:
            e.media.close_stream(ch)
    for outcome in e.outcomes:
        outcome.finished = True
    e._channels.clear()
    e._bridges.clear()  # Stasis bridges die with the process, with no event
    e._playbacks.clear()
    e.calls.clear()
    e.device_states.clear()
    e.local_dialer.calls.clear()
    e._chan_seq = itertools.count(0)
    e._snoop_seq = itertools.count(0)
    e._local_seq = itertools.count(0)
    e._uid_seq = itertools.count(0)
    e.started_wall = time.time()
