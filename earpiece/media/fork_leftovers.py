"""What a dead Earpiece left at the PBX, and its removal at start-up.

After ``kill -9`` (or a crash, or a host reset) during calls, Asterisk keeps the fork's helpers:
the snoop channel until its target hangs up, the ``externalMedia`` channel and the mixing
bridge for ever (``captures/faults/ari/crash_leftovers``: ``ep-crash-customer-bridge``, class
``stasis``, and ``ep-crash-customer-em``, ``UnicastRTP/...`` ``Up``, still there after the call
ended; ``DELETE`` -> 204, a second ``DELETE`` -> 404). A restarted Earpiece would snoop the
same customer twice. :meth:`earpiece.media.fork.MediaFork.clean_leftovers` removes them before
the first resync makes fresh forks; the instance lock (one live Earpiece per ARI application)
makes every helper of our application a dead predecessor's.

Ours, for ARI application ``app`` and id prefix ``prefix`` (``ep``):

- a channel whose technology is a fork helper's (``Snoop``, ``UnicastRTP``, ``AudioSocket``)
  and that is in Stasis for ``app``: ``dialplan.app_name == "Stasis"`` and ``app_data`` is
  ``app`` or starts with ``app,`` (in the capture both leftovers show ``Stasis``/``assist``).
  Channels of calls that run ``Stasis(app)`` from the dialplan are PJSIP/Local/...: never
  touched;
- a bridge named ``"<prefix>:<app> ..."`` (the name :class:`MediaFork` gives its bridges), or,
  made by an older Earpiece (whose bridge names did not carry the application), a ``stasis``
  bridge whose id starts with ``<prefix>-`` and which holds nothing but helpers of ours.

The whisper delivery's helpers (:mod:`earpiece.delivery.whisper`: a ``whisper=out`` snoop on
the agent channel, an externalMedia channel, a bridge named ``"<prefix>:<app> <call> whisper"``)
fall under the same rules and are removed too.

Resources this process made (their ids are in ``skip``) are left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from earpiece.errors import EarpieceError, PbxConnectionError
from earpiece.media.fork_parts import AriMediaClient, ForkStats, http_status

log = logging.getLogger("earpiece.media.fork")

HELPER_TECHS = {"Snoop": "snoop", "UnicastRTP": "media", "AudioSocket": "media"}


def bridge_name_prefix(id_prefix: str, app: str) -> str:
    """The start of the name of every bridge the fork makes for ``app``."""
    return f"{id_prefix}:{app} "


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def stasis_app(channel: Any) -> str | None:
    """The ARI application a listed channel is in Stasis for, or ``None``."""
    dialplan = _field(channel, "dialplan")
    if dialplan is None:
        return None
    app_name = _field(dialplan, "app_name") or ""
    if str(app_name).lower() != "stasis":
        return None
    data = str(_field(dialplan, "app_data") or "")
    return data.split(",", 1)[0].strip() or None


def helper_kind(channel: Any, app: str) -> str | None:
    """``"snoop"`` / ``"media"`` for a fork helper channel of ``app``, else ``None``."""
    name = str(_field(channel, "name") or "")
    kind = HELPER_TECHS.get(name.split("/", 1)[0])
    if kind is None or stasis_app(channel) != app:
        return None
    return kind


@dataclass
class Leftovers:
    snoops: list[str] = field(default_factory=list)
    media: list[str] = field(default_factory=list)
    bridges: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.snoops or self.media or self.bridges)


def find_leftovers(
    channels: Iterable[Any], bridges: Iterable[Any], *, app: str, id_prefix: str,
    skip: set[str],
) -> Leftovers:
    """The helpers of ``app`` in the PBX's listings that this process did not make."""
    found = Leftovers()
    ours: set[str] = set()
    for ch in channels:
        cid = str(_field(ch, "id") or "")
        kind = helper_kind(ch, app)
        if not cid or kind is None:
            continue
        ours.add(cid)
        if cid not in skip:
            (found.snoops if kind == "snoop" else found.media).append(cid)
    named = bridge_name_prefix(id_prefix, app)
    for br in bridges:
        bid = str(_field(br, "id") or "")
        if not bid or bid in skip:
            continue
        name = str(_field(br, "name") or "")
        if name.startswith(named):
            found.bridges.append(bid)
            continue
        # an older Earpiece's bridge: no application in its name
        if not bid.startswith(f"{id_prefix}-") or name.startswith(f"{id_prefix}:"):
            continue
        if (_field(br, "bridge_class") or "stasis") != "stasis":
            continue
        members = _field(br, "channels") or ()
        if all(m in ours for m in members):
            found.bridges.append(bid)
    return found


async def remove_leftovers(
    ari: AriMediaClient, found: Leftovers, stats: ForkStats, *,
    defer: Callable[[str, str], None],
) -> tuple[int, int, int, int]:
    """Hang up the channels, then destroy the bridges; 404 counts as already gone, a removal
    that fails for want of ARI goes to ``defer(kind, id)`` (retried on the next resync).
    Returns (snoops, externalMedia channels, bridges) removed and how many were already gone.
    """
    removed = {"snoop": 0, "media": 0, "bridge": 0}
    gone = 0
    work = [("snoop", rid) for rid in found.snoops] + [("media", rid) for rid in found.media]
    work += [("bridge", rid) for rid in found.bridges]
    for what, rid in work:
        kind = "bridge" if what == "bridge" else "channel"
        try:
            if kind == "channel":
                await ari.hangup_channel(rid)
            else:
                await ari.destroy_bridge(rid)
        except PbxConnectionError as exc:
            stats.teardown_deferred += 1
            defer(kind, rid)
            log.warning("leftover %s %s: removal deferred until ARI is back: %s", kind, rid,
                        exc)
            continue
        except EarpieceError as exc:
            if http_status(exc) == 404:  # removed meanwhile (a snoop goes with its target)
                gone += 1
                log.debug("leftover %s %s already gone", kind, rid)
            else:
                stats.teardown_errors += 1
                log.warning("leftover %s %s: cannot remove it: %s", kind, rid, exc)
            continue
        removed[what] += 1
        log.debug("leftover %s %s removed", kind, rid)
    stats.leftover_snoops += removed["snoop"]
    stats.leftover_media += removed["media"]
    stats.leftover_bridges += removed["bridge"]
    return removed["snoop"], removed["media"], removed["bridge"], gone


__all__ = [
    "HELPER_TECHS",
    "Leftovers",
    "bridge_name_prefix",
    "find_leftovers",
    "helper_kind",
    "remove_leftovers",
    "stasis_app",
]
