"""The errors an AMI action can end with, and the convenience actions of
:class:`~earpiece.agi.ami_client.AmiClient` (Originate, Hangup, CoreShowChannels, MessageSend,
SendText, Command, Ping).

:class:`AmiActions` builds each action and sends it through ``send_action`` /
``send_list_action`` / ``next_action_id``, only declared here:
:class:`~earpiece.agi.ami_client.AmiClient` implements them and inherits the actions.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping

from earpiece.agi.ami_message import AmiMessage
from earpiece.errors import PbxError


class AmiActionError(PbxError):
    """Asterisk answered an action with ``Response: Error``; ``message`` is its ``Message``."""

    def __init__(self, action: str, response: AmiMessage, detail: str | None = None) -> None:
        self.action = action
        self.response = response
        self.message = response.get("Message") or ""
        super().__init__(f"AMI {action} failed: {detail or self.message or '(no Message)'}")


class AmiTimeoutError(PbxError):
    """No (complete) answer to an action within its timeout."""


class AmiActions:
    """Convenience actions, mixed into :class:`~earpiece.agi.ami_client.AmiClient`."""

    # --- implemented by AmiClient --------------------------------------------------------
    def next_action_id(self) -> str:
        raise NotImplementedError

    async def send_action(
        self, message: AmiMessage, *, timeout_s: float | None = None
    ) -> AmiMessage:
        raise NotImplementedError

    async def send_list_action(
        self, message: AmiMessage, *, timeout_s: float | None = None
    ) -> tuple[AmiMessage, list[AmiMessage]]:
        raise NotImplementedError

    # --- convenience actions -------------------------------------------------------------
    async def originate(
        self,
        channel: str,
        *,
        context: str | None = None,
        exten: str | None = None,
        priority: int | str | None = None,
        application: str | None = None,
        data: str | None = None,
        caller_id: str | None = None,
        timeout_ms: int | None = None,
        variables: Mapping[str, str] | None = None,
        action_id: str | None = None,
    ) -> str:
        """Queue an async Originate; return its ActionID.

        Either ``exten`` (with ``context``; ``priority`` defaults to 1) or ``application``
        (with optional ``data``). The outcome arrives later on ``on_event`` as an
        ``OriginateResponse`` event carrying the returned ActionID.
        """
        if (exten is None) == (application is None):
            raise ValueError("originate needs exactly one of exten= or application=")
        if application is not None and (context is not None or priority is not None):
            raise ValueError("originate: context=/priority= go with exten=, not application=")
        if exten is not None and data is not None:
            raise ValueError("originate: data= goes with application=, not exten=")
        aid = action_id if action_id is not None else self.next_action_id()
        headers: list[tuple[str, str]] = [
            ("Action", "Originate"),
            ("ActionID", aid),
            ("Channel", channel),
        ]
        if exten is not None:
            if context is not None:
                headers.append(("Context", context))
            headers.append(("Exten", exten))
            headers.append(("Priority", str(1 if priority is None else priority)))
        else:
            assert application is not None
            headers.append(("Application", application))
            if data is not None:
                headers.append(("Data", data))
        if caller_id is not None:
            headers.append(("CallerID", caller_id))
        if timeout_ms is not None:
            headers.append(("Timeout", str(int(timeout_ms))))
        for name, value in (variables or {}).items():
            headers.append(("Variable", f"{name}={value}"))
        headers.append(("Async", "true"))
        await self.send_action(AmiMessage(tuple(headers)))
        return aid

    async def hangup(self, channel: str, cause: int | None = None) -> None:
        """Hang up a channel (``Cause`` is a Q.850 cause code, e.g. 16)."""
        fields = {"Channel": channel}
        if cause is not None:
            fields["Cause"] = str(int(cause))
        await self.send_action(AmiMessage.action("Hangup", self.next_action_id(), **fields))

    async def core_show_channels(self) -> list[AmiMessage]:
        """The live channels, one ``CoreShowChannel`` event each."""
        _, items = await self.send_list_action(
            AmiMessage.action("CoreShowChannels", self.next_action_id())
        )
        return [m for m in items if m.event == "CoreShowChannel"]

    async def message_send(
        self,
        to: str,
        body: str,
        from_: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> None:
        """Send an out-of-call message (SIP MESSAGE with ``pjsip:endpoint``).

        A body with line breaks goes as ``Base64Body`` (an AMI header cannot hold them).
        """
        fields: dict[str, str | list[str]] = {"To": to}
        if from_ is not None:
            fields["From"] = from_
        if "\r" in body or "\n" in body:
            fields["Base64Body"] = base64.b64encode(body.encode("utf-8")).decode("ascii")
        else:
            fields["Body"] = body
        if variables:
            fields["Variable"] = [f"{k}={v}" for k, v in variables.items()]
        await self.send_action(AmiMessage.action("MessageSend", self.next_action_id(), **fields))

    async def send_text(self, channel: str, message: str) -> None:
        """Send text to a channel in a call (``SendText``)."""
        await self.send_action(
            AmiMessage.action("SendText", self.next_action_id(), Channel=channel, Message=message)
        )

    async def command(self, cmd: str) -> list[str]:
        """Run a CLI command; return its output lines (``Output:`` headers).

        Needs the ``command`` write class, which the shipped least-privilege manager.conf does
        not grant (Asterisk answers ``Permission denied``): a client helper for sites that
        allow it; Earpiece itself never sends it (:mod:`earpiece.agi.ami_permissions`).
        """
        action = AmiMessage.action("Command", self.next_action_id(), Command=cmd)
        try:
            response = await self.send_action(action)
        except AmiActionError as exc:
            output = exc.response.get_all("Output")
            if output:
                raise AmiActionError("Command", exc.response, "; ".join(output)) from None
            raise
        return response.get_all("Output")

    async def ping(self) -> float:
        """Ping the server; return the round-trip time in seconds."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self.send_action(AmiMessage.action("Ping", self.next_action_id()))
        return loop.time() - started
