"""The typed ARI REST operations of :class:`~earpiece.agi.ari_client.AriClient`, and the
query/path encoding they use.

:class:`AriRestApi` holds one method per ARI operation Earpiece uses (channels, bridges,
playbacks, applications, asterisk). They call the HTTP plumbing (``_model``, ``_models``,
``_void``), only declared here: :class:`~earpiece.agi.ari_client.AriClient` implements it and
inherits the operations. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from earpiece.agi.ari_models import (
    Application,
    AriModel,
    AsteriskInfo,
    AsteriskPing,
    Bridge,
    Channel,
    Playback,
    Variable,
)

M = TypeVar("M", bound=AriModel)

QueryItems = Iterable[tuple[str, object]]


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def encode_query(items: QueryItems) -> str:
    """``k=v&...`` percent-encoded like the recordings; ``None`` values are left out."""
    parts = []
    for key, value in items:
        if value is None:
            continue
        parts.append(f"{quote(key, safe='')}={quote(_query_value(value), safe='')}")
    return "&".join(parts)


def _seg(value: str) -> str:
    """One path segment (channel id, bridge id...), percent-encoded."""
    if not value:
        raise ValueError("empty ARI resource id")
    return quote(value, safe="")


def _join(value: str | Sequence[str]) -> str:
    if isinstance(value, str):
        return value
    return ",".join(value)


class AriRestApi:
    """Typed ARI REST operations, mixed into :class:`~earpiece.agi.ari_client.AriClient`."""

    # ---------------------------------------------------------------- REST plumbing (AriClient's)

    async def _model(
        self,
        cls: type[M],
        method: str,
        path: str,
        query: QueryItems = (),
        *,
        body: Mapping[str, Any] | None = None,
    ) -> M:
        raise NotImplementedError

    async def _models(self, cls: type[M], method: str, path: str) -> list[M]:
        raise NotImplementedError

    async def _void(self, method: str, path: str, query: QueryItems = ()) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------- channels

    async def list_channels(self) -> list[Channel]:
        """``GET /channels``: every active channel."""
        return await self._models(Channel, "GET", "/channels")

    async def get_channel(self, channel_id: str) -> Channel:
        """``GET /channels/{channelId}``."""
        return await self._model(Channel, "GET", f"/channels/{_seg(channel_id)}")

    async def originate(
        self,
        endpoint: str,
        *,
        app: str | None = None,
        app_args: str | Sequence[str] | None = None,
        context: str | None = None,
        extension: str | None = None,
        priority: int | None = None,
        caller_id: str | None = None,
        timeout: int | None = None,  # noqa: ASYNC109 (ARI's originate parameter)
        channel_id: str | None = None,
        other_channel_id: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> Channel:
        """``POST /channels``: the new (``;1`` for Local) channel, in state ``Down``.

        Give either ``app`` (Stasis) or ``context``/``extension``/``priority``; ``timeout`` is
        in seconds; ``variables`` go in the JSON body ``{"variables": {...}}``.
        """
        query = (
            ("endpoint", endpoint),
            ("context", context),
            ("extension", extension),
            ("priority", priority),
            ("app", app),
            ("appArgs", None if app_args is None else _join(app_args)),
            ("callerId", caller_id),
            ("timeout", timeout),
            ("channelId", channel_id),
            ("otherChannelId", other_channel_id),
        )
        body = {"variables": dict(variables)} if variables else None
        return await self._model(Channel, "POST", "/channels", query, body=body)

    async def hangup_channel(self, channel_id: str, reason: str | None = "normal") -> None:
        """``DELETE /channels/{channelId}?reason=...`` (204)."""
        await self._void("DELETE", f"/channels/{_seg(channel_id)}", (("reason", reason),))

    async def answer_channel(self, channel_id: str) -> None:
        """``POST /channels/{channelId}/answer`` (204)."""
        await self._void("POST", f"/channels/{_seg(channel_id)}/answer")

    async def snoop_channel(
        self,
        channel_id: str,
        *,
        app: str,
        spy: str = "none",
        whisper: str = "none",
        app_args: str = "",
        snoop_id: str | None = None,
    ) -> Channel:
        """``POST /channels/{channelId}/snoop``: a ``Snoop/...`` channel in state ``Up``.

        ``spy="in"`` is what the snooped channel sends into Asterisk (its party's voice),
        ``spy="out"`` what Asterisk sends to it (what its party hears). The snoop's
        ``StasisStart`` (carrying ``app_args``) may arrive before this call returns.
        """
        query = (
            ("spy", spy),
            ("whisper", whisper),
            ("app", app),
            ("appArgs", app_args or None),
            ("snoopId", snoop_id),
        )
        return await self._model(Channel, "POST", f"/channels/{_seg(channel_id)}/snoop", query)

    async def external_media(
        self,
        *,
        app: str,
        external_host: str,
        format: str,
        channel_id: str | None = None,
        encapsulation: str = "rtp",
        transport: str = "udp",
        connection_type: str | None = None,
        direction: str = "both",
        data: str | None = None,
    ) -> Channel:
        """``POST /channels/externalMedia``: a ``UnicastRTP/...`` channel.

        Its ``channelvars`` carry ``UNICASTRTP_LOCAL_ADDRESS``/``UNICASTRTP_LOCAL_PORT``, the
        address Asterisk sends RTP from.
        """
        query = (
            ("app", app),
            ("external_host", external_host),
            ("format", format),
            ("channelId", channel_id),
            ("encapsulation", None if encapsulation == "rtp" else encapsulation),
            ("transport", None if transport == "udp" else transport),
            ("connection_type", connection_type),
            ("direction", None if direction == "both" else direction),
            ("data", data),
        )
        return await self._model(Channel, "POST", "/channels/externalMedia", query)

    async def get_channel_var(self, channel_id: str, name: str) -> str:
        """``GET /channels/{channelId}/variable?variable=NAME``: the value."""
        path = f"/channels/{_seg(channel_id)}/variable"
        var = await self._model(Variable, "GET", path, (("variable", name),))
        return var.value

    async def set_channel_var(self, channel_id: str, name: str, value: str) -> None:
        """``POST /channels/{channelId}/variable?variable=NAME&value=VALUE`` (204)."""
        path = f"/channels/{_seg(channel_id)}/variable"
        await self._void("POST", path, (("variable", name), ("value", value)))

    async def play(
        self,
        channel_id: str,
        media: str | Sequence[str],
        playback_id: str | None = None,
        lang: str | None = None,
    ) -> Playback:
        """``POST /channels/{channelId}/play`` (201, state ``queued``).

        ``media`` is one URI (``sound:hello-world``) or a list played in order.
        """
        query = (("media", _join(media)), ("lang", lang), ("playbackId", playback_id))
        return await self._model(Playback, "POST", f"/channels/{_seg(channel_id)}/play", query)

    async def send_dtmf(
        self,
        channel_id: str,
        dtmf: str,
        *,
        before: int | None = None,
        between: int | None = None,
        duration: int | None = None,
        after: int | None = None,
    ) -> None:
        """``POST /channels/{channelId}/dtmf`` (204); times in milliseconds."""
        query = (
            ("dtmf", dtmf),
            ("before", before),
            ("between", between),
            ("duration", duration),
            ("after", after),
        )
        await self._void("POST", f"/channels/{_seg(channel_id)}/dtmf", query)

    # ---------------------------------------------------------------- bridges

    async def list_bridges(self) -> list[Bridge]:
        """``GET /bridges``."""
        return await self._models(Bridge, "GET", "/bridges")

    async def get_bridge(self, bridge_id: str) -> Bridge:
        """``GET /bridges/{bridgeId}``."""
        return await self._model(Bridge, "GET", f"/bridges/{_seg(bridge_id)}")

    async def create_bridge(
        self, *, type: str = "mixing", bridge_id: str | None = None, name: str = ""
    ) -> Bridge:
        """``POST /bridges?type=...&bridgeId=...&name=...``."""
        query = (("type", type), ("bridgeId", bridge_id), ("name", name or None))
        return await self._model(Bridge, "POST", "/bridges", query)

    async def add_channel_to_bridge(
        self,
        bridge_id: str,
        channel_id: str | Sequence[str],
        *,
        role: str | None = None,
        absorb_dtmf: bool | None = None,
        mute: bool | None = None,
        inhibit_connected_line_updates: bool | None = None,
    ) -> None:
        """``POST /bridges/{bridgeId}/addChannel?channel=...`` (204).

        ``ChannelEnteredBridge`` may arrive before this call returns.
        """
        query = (
            ("channel", _join(channel_id)),
            ("role", role),
            ("absorbDTMF", absorb_dtmf),
            ("mute", mute),
            ("inhibitConnectedLineUpdates", inhibit_connected_line_updates),
        )
        await self._void("POST", f"/bridges/{_seg(bridge_id)}/addChannel", query)

    async def remove_channel_from_bridge(
        self, bridge_id: str, channel_id: str | Sequence[str]
    ) -> None:
        """``POST /bridges/{bridgeId}/removeChannel?channel=...`` (204)."""
        query = (("channel", _join(channel_id)),)
        await self._void("POST", f"/bridges/{_seg(bridge_id)}/removeChannel", query)

    async def destroy_bridge(self, bridge_id: str) -> None:
        """``DELETE /bridges/{bridgeId}`` (204)."""
        await self._void("DELETE", f"/bridges/{_seg(bridge_id)}")

    # ---------------------------------------------------------------- playbacks

    async def get_playback(self, playback_id: str) -> Playback:
        """``GET /playbacks/{playbackId}`` (404 once finished)."""
        return await self._model(Playback, "GET", f"/playbacks/{_seg(playback_id)}")

    async def stop_playback(self, playback_id: str) -> None:
        """``DELETE /playbacks/{playbackId}`` (204)."""
        await self._void("DELETE", f"/playbacks/{_seg(playback_id)}")

    # ---------------------------------------------------------------- applications, asterisk

    async def list_applications(self) -> list[Application]:
        """``GET /applications``."""
        return await self._models(Application, "GET", "/applications")

    async def get_application(self, name: str) -> Application:
        """``GET /applications/{applicationName}``."""
        return await self._model(Application, "GET", f"/applications/{_seg(name)}")

    async def subscribe_application(
        self, name: str, event_source: str | Sequence[str]
    ) -> Application:
        """``POST /applications/{applicationName}/subscription?eventSource=channel:ID,...``."""
        path = f"/applications/{_seg(name)}/subscription"
        query = (("eventSource", _join(event_source)),)
        return await self._model(Application, "POST", path, query)

    async def asterisk_info(self) -> AsteriskInfo:
        """``GET /asterisk/info``."""
        return await self._model(AsteriskInfo, "GET", "/asterisk/info")

    async def ping(self) -> AsteriskPing:
        """``GET /asterisk/ping``."""
        return await self._model(AsteriskPing, "GET", "/asterisk/ping")
