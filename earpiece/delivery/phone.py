"""Prompts to the agent's desk phone: AMI ``MessageSend`` (a SIP MESSAGE from chan_pjsip).

:class:`DeskPhone` follows the agent legs of each call (``ChannelJoined`` with role ``agent``;
``PJSIP/agent1-00000002`` -> endpoint ``agent1``) and sends every
:class:`~earpiece.events.PromptReady` of the call to ``pjsip:<endpoint>``: a one-line text cut
to ``[delivery] phone_max_chars`` at a word (a body with line breaks would need
``Base64Body``), or with ``phone_json`` a compact JSON body sent with
``Variable: Content-Type=application/json``. Asterisk 22 answers ``Message successfully sent``
or, for an endpoint without a registered contact, ``Error`` / ``Message failed to send.``;
each outcome is published as :class:`~earpiece.events.PromptDelivered` (``channel="phone"``,
``status`` sent / failed with the PBX's reason in ``detail`` / skipped when the call has no
agent desk phone), which the CRM keeps per prompt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from earpiece.agi.ami_actions import AmiActionError
from earpiece.bus import EventBus
from earpiece.delivery.settings import DeliverySettings
from earpiece.errors import EarpieceError
from earpiece.events import (
    CallEnded,
    ChannelJoined,
    ChannelLeft,
    ChannelRole,
    PromptDelivered,
    PromptReady,
)

log = logging.getLogger(__name__)

#: Channel technologies whose channel name starts with the endpoint name.
SIP_TECHS = ("pjsip", "sip")


class MessageSender(Protocol):
    """What :class:`DeskPhone` needs of :class:`~earpiece.agi.ami_client.AmiClient`."""

    async def message_send(self, to: str, body: str, from_: str | None = None,
                           variables: Mapping[str, str] | None = None) -> None: ...


def endpoint_of(channel: str) -> str | None:
    """``PJSIP/agent1-0000002a`` -> ``agent1``; None for a channel without a SIP endpoint."""
    tech, sep, rest = channel.partition("/")
    if not sep or tech.lower() not in SIP_TECHS or not rest:
        return None
    name = rest.rpartition("-")[0] if "-" in rest else rest
    return name or None


def phone_text(kind: str, text: str, max_chars: int) -> str:
    """One line of at most ``max_chars``: ``[kind] text``, cut at a word with an ellipsis."""
    line = " ".join(f"[{kind}] {text}".split())
    if len(line) <= max_chars:
        return line
    cut = line[: max_chars - 1]
    if " " in cut[max_chars // 2:]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.") + "…"


def phone_json(ev: PromptReady, max_chars: int) -> str:
    """The compact JSON body (one line) of ``phone_json = true``."""
    body = {"prompt_id": ev.prompt_id, "call_id": ev.call_id, "kind": ev.kind,
            "short": phone_text(ev.kind, ev.text, max_chars), "text": ev.text,
            "slot": ev.slot, "product": ev.product, "rule": ev.rule,
            "emotion": ev.reason.get("emotion"), "index": ev.reason.get("index")}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


class DeskPhone:
    """Sends each prompt to the desk phone of the call's agent (see the module docstring)."""

    def __init__(self, bus: EventBus, sender: MessageSender,
                 settings: DeliverySettings | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.bus = bus
        self.sender = sender
        self.settings = settings or DeliverySettings()
        self._clock = clock
        self._agents: dict[str, dict[str, str]] = {}  # call id -> uniqueid -> channel
        self._tasks: set[asyncio.Task[PromptDelivered]] = set()
        self._unsubscribe: list[Callable[[], None]] = []
        self.sent = 0
        self.failed = 0
        self.skipped = 0

    def start(self) -> None:
        sub = self.bus.subscribe
        self._unsubscribe = [sub(ChannelJoined, self._on_joined), sub(ChannelLeft, self._on_left),
                             sub(CallEnded, self._on_ended), sub(PromptReady, self._on_prompt)]

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self._tasks:  # answers due within phone_timeout_s
            await asyncio.wait(list(self._tasks), timeout=self.settings.phone_timeout_s + 0.5)
        for task in list(self._tasks):
            task.cancel()

    # --- agent legs ----------------------------------------------------------------------------
    def _on_joined(self, ev: ChannelJoined) -> None:
        if ev.role == ChannelRole.AGENT:
            self._agents.setdefault(ev.call_id, {})[ev.uniqueid] = ev.channel

    def _on_left(self, ev: ChannelLeft) -> None:
        legs = self._agents.get(ev.call_id)
        if legs is not None:
            legs.pop(ev.uniqueid, None)

    def _on_ended(self, ev: CallEnded) -> None:
        self._agents.pop(ev.call_id, None)

    def target(self, call_id: str) -> str | None:
        """``pjsip:<endpoint>`` of the call's latest agent leg with a SIP endpoint."""
        for channel in reversed(list(self._agents.get(call_id, {}).values())):
            endpoint = endpoint_of(channel)
            if endpoint is not None:
                return f"{self.settings.phone_tech}:{endpoint}"
        return None

    # --- sending -------------------------------------------------------------------------------
    def _on_prompt(self, ev: PromptReady) -> None:
        if not self.settings.phone:
            return
        task = asyncio.get_running_loop().create_task(self.send(ev), name="desk-phone")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def send(self, ev: PromptReady) -> PromptDelivered:
        """Send one prompt and publish (and return) what became of it."""
        s = self.settings
        to = self.target(ev.call_id)
        if to is None:
            self.skipped += 1
            return self._report(ev, "skipped", "", "no agent desk phone on the call")
        variables: dict[str, str] | None = None
        if s.phone_json:
            body = phone_json(ev, s.phone_max_chars)
            variables = {"Content-Type": "application/json"}
        else:
            body = phone_text(ev.kind, ev.text, s.phone_max_chars)
        try:
            await asyncio.wait_for(
                self.sender.message_send(to, body, from_=s.phone_from or None,
                                         variables=variables),
                s.phone_timeout_s)
        except AmiActionError as exc:  # the PBX's own reason, e.g. "Message failed to send."
            return self._failed(ev, to, exc.message or str(exc))
        except TimeoutError:
            return self._failed(ev, to, f"no answer to MessageSend within {s.phone_timeout_s:g} s")
        except EarpieceError as exc:  # not connected, connection lost
            return self._failed(ev, to, str(exc))
        self.sent += 1
        return self._report(ev, "sent", to, "")

    def _failed(self, ev: PromptReady, to: str, why: str) -> PromptDelivered:
        self.failed += 1
        log.warning("[%s] prompt to %s not delivered: %s", ev.call_id, to, why)
        return self._report(ev, "failed", to, why)

    def _report(self, ev: PromptReady, status: str, to: str, detail: str) -> PromptDelivered:
        out = PromptDelivered(call_id=ev.call_id, prompt_id=ev.prompt_id, channel="phone",
                              status=status, target=to, detail=detail,
                              latency_s=max(0.0, self._clock() - ev.at))
        self.bus.publish(out)
        return out
