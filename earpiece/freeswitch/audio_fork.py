"""``uuid_audio_fork`` (mod_audio_fork) commands and per-party fork control over the event socket.

Wire facts (FreeSWITCH 1.10.12 + mod_audio_fork 88e14659, ``../shared/freeswitch/README.md``,
``captures/esl/audio_fork.json`` ``fork_api``):

* ``uuid_audio_fork <uuid> start <ws-url> <mono|mixed|stereo> <8k|16k> [bugname] [metadata]``
  answers ``+OK Success``. The captured commands omit the bug name when the metadata follows the
  rate directly (``... stereo 8k {"leg":...}``). Arguments are split at spaces, so the metadata
  must be one space-free word: :func:`metadata_word` writes compact JSON with any space inside a
  string escaped as ``\\u0020`` (still the same JSON value).
* Failures are text in the ``api/response``: ``-ERR Operation Failed`` (second fork on a channel
  without a new bug name, unknown UUID), ``-ERR no reply`` (bad mix type), ``-USAGE: ...``.
* ``+OK Success`` does **not** mean connected: a closed port still said ``+OK``; the CUSTOM event
  ``mod_audio_fork::connect_failed`` came 21 ms later. ``mod_audio_fork::connect`` carries no bug
  name, ``MEDIA_BUG_START`` / ``_STOP`` carry ``Media-Bug-Function: <bugname>``.
* ``stop [bugname] [text]`` sends the text, then FreeSWITCH closes the websocket (1000).

The builders are pure; :class:`AudioForkControl` sends them through anything with the
:meth:`~earpiece.freeswitch.esl_client.EslClient.api` coroutine and follows the forks' state
from the events it is fed. Tokens and the websocket server live in :mod:`earpiece.media.
audio_fork` (rank 2); here the URL and metadata are opaque.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from earpiece.errors import PbxError
from earpiece.events import Party
from earpiece.freeswitch.esl_event import EslEvent

log = logging.getLogger(__name__)

Mix = Literal["mono", "stereo"]
#: Sample rate -> the rate argument as captured.
RATE_ARGS: dict[int, str] = {8000: "8k", 16000: "16k"}
DEFAULT_BUG = "audio_fork"
ForkState = Literal["starting", "started", "connected", "failed", "disconnected", "stopped"]


class AudioForkError(PbxError):
    """``uuid_audio_fork`` answered something other than ``+OK``."""

    def __init__(self, command: str, reply: str) -> None:
        super().__init__(f"{command.split(' ', 3)[:3]}: {reply.strip() or '(empty reply)'}")
        self.command = command
        self.reply = reply


def metadata_word(metadata: Mapping[str, object]) -> str:
    """Compact JSON with no space, tab or newline anywhere (one ``uuid_audio_fork`` argument)."""
    text = json.dumps(dict(metadata), separators=(",", ":"), ensure_ascii=True)
    # outside strings compact JSON has no whitespace; inside, json.dumps escaped all but " "
    return text.replace(" ", "\\u0020")


def _word(name: str, value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"uuid_audio_fork {name} must be one non-empty word: {value!r}")
    return value


def _bug(bug: str | None) -> list[str]:
    if bug is None:
        return []
    if bug[:1] in ("{", "["):
        raise ValueError(f"a bug name cannot start with {bug[0]!r} (read as metadata)")
    return [_word("bug name", bug)]


def start_command(uuid: str, url: str, mix: Mix, rate: int, *, bug: str | None = None,
                  metadata: Mapping[str, object] | str | None = None) -> str:
    """``uuid_audio_fork <uuid> start <url> <mix> <rate> [bug] [metadata]`` (no ``api``)."""
    if mix not in ("mono", "stereo"):
        raise ValueError(f"mix {mix!r}: mono or stereo")
    if rate not in RATE_ARGS:
        raise ValueError(f"audio fork rate {rate} not in {sorted(RATE_ARGS)}")
    if not url.startswith(("ws://", "wss://")):
        raise ValueError(f"audio fork URL must be ws:// or wss://: {url!r}")
    words = ["uuid_audio_fork", _word("uuid", uuid), "start", _word("url", url), mix,
             RATE_ARGS[rate], *_bug(bug)]
    if metadata is not None:
        words.append(_word("metadata", metadata if isinstance(metadata, str)
                           else metadata_word(metadata)))
    return " ".join(words)


def stop_command(uuid: str, *, bug: str | None = None, text: str | None = None) -> str:
    """``uuid_audio_fork <uuid> stop [bug] [text]``; ``text`` goes to the server first."""
    words = ["uuid_audio_fork", _word("uuid", uuid), "stop", *_bug(bug)]
    if text is not None:
        if bug is None:
            raise ValueError("stop with a text needs the bug name before it")
        words.append(_word("text", text))
    return " ".join(words)


def send_text_command(uuid: str, text: str, *, bug: str | None = None) -> str:
    """``uuid_audio_fork <uuid> send_text [bug] <text>``."""
    return " ".join(["uuid_audio_fork", _word("uuid", uuid), "send_text", *_bug(bug),
                     _word("text", text)])


def reply_ok(reply: str) -> bool:
    return reply.startswith("+OK")


class ApiSender(Protocol):
    async def api(self, command: str, *, timeout_s: float | None = None) -> str: ...


@dataclass
class ForkHandle:
    """One fork started by :class:`AudioForkControl`."""

    call_id: str
    channel_uuid: str
    parties: tuple[Party, ...]
    rate: int
    url: str
    bug: str
    state: ForkState = "starting"
    reason: str = ""

    @property
    def mix(self) -> Mix:
        return "mono" if len(self.parties) == 1 else "stereo"

    @property
    def active(self) -> bool:
        return self.state in ("starting", "started", "connected")


def bug_name(parties: tuple[Party, ...]) -> str:
    """One bug name per party set, so a leg can carry a mono and a stereo fork at once."""
    return "earpiece_" + "_".join(parties)


@dataclass
class AudioForkControl:
    """Starts and stops forks per party through ``esl.api`` and follows them from events."""

    esl: ApiSender
    forks: list[ForkHandle] = field(default_factory=list)

    async def start(self, call_id: str, channel_uuid: str, parties: tuple[Party, ...],
                    url: str, *, rate: int = 8000,
                    metadata: Mapping[str, object] | None = None) -> ForkHandle:
        """Fork ``channel_uuid``: ``(party,)`` mono, or ``(left, right)`` stereo (the customer
        leg gives customer left, agent right). Raises :class:`AudioForkError` on ``-ERR``."""
        if len(parties) not in (1, 2):
            raise ValueError(f"a fork carries one or two parties: {parties}")
        bug = bug_name(parties)
        if any(f.active and f.channel_uuid == channel_uuid and f.bug == bug for f in self.forks):
            raise ValueError(f"{channel_uuid} already has a fork {bug}")
        handle = ForkHandle(call_id, channel_uuid, parties, rate, url, bug)
        meta: dict[str, object] = {"call": call_id, "parties": list(parties)}
        meta.update(metadata or {})
        mix: Mix = handle.mix
        cmd = start_command(channel_uuid, url, mix, rate, bug=bug, metadata=meta)
        reply = await self.esl.api(cmd)
        if not reply_ok(reply):
            handle.state, handle.reason = "failed", reply.strip()
            self.forks.append(handle)
            raise AudioForkError(cmd, reply)
        if handle.state == "starting":
            handle.state = "started"
        self.forks.append(handle)
        return handle

    async def start_party(self, call_id: str, party: Party, channel_uuid: str, url: str, *,
                          rate: int = 8000,
                          metadata: Mapping[str, object] | None = None) -> ForkHandle:
        """A mono fork of ``party``'s own leg."""
        return await self.start(call_id, channel_uuid, (party,), url, rate=rate,
                                metadata=metadata)

    async def stop(self, handle: ForkHandle, *, text: str | None = None) -> bool:
        """Stop one fork (``text``, e.g. ``{"final":true}``, is sent to the server first).
        Returns whether FreeSWITCH said ``+OK``; a hung-up channel's fork is already gone."""
        if not handle.active:
            return False
        reply = await self.esl.api(stop_command(handle.channel_uuid, bug=handle.bug, text=text))
        handle.state = "stopped"
        if not reply_ok(reply):
            handle.reason = reply.strip()
            return False
        return True

    async def stop_call(self, call_id: str) -> int:
        """Stop every active fork of a call; returns how many FreeSWITCH confirmed."""
        n = 0
        for h in [f for f in self.forks if f.call_id == call_id and f.active]:
            n += await self.stop(h)
        return n

    def forget(self, call_id: str) -> None:
        self.forks = [f for f in self.forks if f.call_id != call_id]

    def of_call(self, call_id: str) -> list[ForkHandle]:
        return [f for f in self.forks if f.call_id == call_id]

    def feed(self, event: EslEvent) -> ForkHandle | None:
        """Follow ``mod_audio_fork::*`` and ``MEDIA_BUG_*`` events; returns the fork changed.

        ``connect`` / ``connect_failed`` / ``disconnect`` name no bug: they go to the oldest fork
        of that channel still waiting for that news. ``MEDIA_BUG_STOP`` (hangup, ``stop``) ends
        the fork with that bug name."""
        uuid = event.unique_id
        if uuid is None:
            return None
        name = event.name
        mine = [f for f in self.forks if f.channel_uuid == uuid]
        if name == "MEDIA_BUG_STOP":
            bug = event.get("Media-Bug-Function")
            for f in mine:  # a disconnected fork's bug stays on the channel until hangup
                if f.bug == bug and f.state not in ("stopped", "failed"):
                    f.state = "stopped"
                    return f
            return None
        wanted: dict[str, tuple[tuple[str, ...], ForkState]] = {
            "mod_audio_fork::connect": (("starting", "started"), "connected"),
            "mod_audio_fork::connect_failed": (("starting", "started"), "failed"),
            "mod_audio_fork::disconnect": (("connected",), "disconnected"),
        }
        rule = wanted.get(name)
        if rule is None:
            return None
        for f in mine:
            if f.state in rule[0]:
                f.state = rule[1]
                if rule[1] == "failed":
                    f.reason = _reason(event.body) or "connect failed"
                    log.warning("audio fork %s of %s failed: %s", f.bug, uuid, f.reason)
                return f
        return None


def _reason(body: str) -> str:
    try:
        obj = json.loads(body)
    except ValueError:
        return body.strip()
    return str(obj.get("reason", "")) if isinstance(obj, dict) else body.strip()
