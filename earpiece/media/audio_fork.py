"""mod_audio_fork (FreeSWITCH) websocket server: transport only, like :mod:`.audiosocket`.

What FreeSWITCH 1.10.12 + mod_audio_fork sent (``../shared/freeswitch/README.md``, captures in
``captures/media/``): an HTTP upgrade with subprotocol ``audio.drachtio.org``; then one **text**
frame, the metadata argument of ``uuid_audio_fork <uuid> start <url> <mix> <rate> [bug]
[metadata]``; then **binary** frames of raw L16, signed 16-bit **little-endian**, one per 20 ms
(320 B mono 8k, 640 B mono 16k, 640 B stereo 8k interleaved L,R; one 1280 B mono 16k frame, two
blocks in one, was seen). Later text frames are JSON too (``send_text`` text such as
``{"event":"dtmf","digit":"5"}``, the ``stop`` text ``{"final":true}``). ``mono`` on a leg
carries that leg's party; ``stereo`` on the customer leg carries the customer **left** (first
sample of each pair) and the agent **right**. mod_audio_stream uses the same framing.

Authentication: every fork gets a per-fork token from :class:`AudioForkTokens` (token ->
:class:`ForkRoute`: call id, parties, rate). The token travels in the URL
(``ws://host:port/audio-fork/<token>`` or ``?token=``; an unknown one is refused with HTTP 403
before the upgrade) or in the metadata JSON (``{"token": ...}``; the connection is closed with
1008 when the first frame does not carry a known one, and audio before it is never used). A
peer address outside :attr:`AudioForkServer.allowed_peers` gets 403. Every refusal, duplicate
and malformed frame is counted in :class:`AudioForkStats`; nothing is raised out of a
connection.

Audio goes into the same :class:`~earpiece.media.frames.PartyStream` /
:class:`~earpiece.media.frames.FrameHub` as RTP and AudioSocket: 8 kHz as codec ``slin``, 16 kHz
as ``slin16le``; the hub resamples per subscriber (:class:`~earpiece.media.resample.Resampler`)
to the rate each asks for. :class:`AudioForkSession` holds a connection's state without I/O.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from earpiece.events import Party
from earpiece.media.frames import Codec, FrameHub, PartyStream
from earpiece.media.settings import VadSettings

log = logging.getLogger(__name__)

#: The websocket subprotocol mod_audio_fork asks for (captured handshake).
SUBPROTOCOL = "audio.drachtio.org"
#: Sample rate -> the frame-hub codec of little-endian signed linear at that rate.
RATE_CODECS: dict[int, Codec] = {8000: "slin", 16000: "slin16le"}
#: Largest websocket message accepted (64 kHz stereo 20 ms is 5120 B; metadata is small).
MAX_MESSAGE = 64 * 1024
PATH = "/audio-fork"
_LE16 = np.dtype("<i2")

Mix = Literal["mono", "stereo"]


@dataclass(frozen=True)
class ForkRoute:
    """Where one fork's audio goes: ``parties`` is ``(party,)`` for mono, ``(left, right)``
    for stereo (the customer leg's stereo fork is ``("customer", "agent")``)."""

    call_id: str
    parties: tuple[Party, ...]
    rate: int = 8000

    def __post_init__(self) -> None:
        if len(self.parties) not in (1, 2) or len(set(self.parties)) != len(self.parties):
            raise ValueError(f"a fork carries one party or two distinct ones: {self.parties}")
        if self.rate not in RATE_CODECS:
            raise ValueError(f"audio fork rate {self.rate} not in {sorted(RATE_CODECS)}")

    @property
    def mix(self) -> Mix:
        return "mono" if len(self.parties) == 1 else "stereo"

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample (all channels): a binary frame must be a multiple of it."""
        return 2 * len(self.parties)


class AudioForkTokens:
    """Token -> :class:`ForkRoute`, filled by whoever starts the forks."""

    def __init__(self) -> None:
        self._routes: dict[str, ForkRoute] = {}

    def issue(self, call_id: str, parties: tuple[Party, ...], rate: int = 8000) -> str:
        """A fresh unguessable token for a new fork."""
        route = ForkRoute(call_id, parties, rate)
        token = secrets.token_urlsafe(18)
        self._routes[token] = route
        return token

    def add(self, token: str, route: ForkRoute) -> None:
        if not token or token in self._routes:
            raise ValueError("audio fork token empty or already registered")
        self._routes[token] = route

    def get(self, token: str) -> ForkRoute | None:
        return self._routes.get(token)

    def revoke(self, token: str) -> ForkRoute | None:
        return self._routes.pop(token, None)

    def revoke_call(self, call_id: str) -> list[str]:
        gone = [t for t, r in self._routes.items() if r.call_id == call_id]
        for t in gone:
            del self._routes[t]
        return gone

    def __len__(self) -> int:
        return len(self._routes)

    def __contains__(self, token: object) -> bool:
        return token in self._routes


@dataclass
class AudioForkStats:
    connections: int = 0  # websockets accepted
    authenticated: int = 0
    refused_peer: int = 0
    refused_token: int = 0  # unknown, missing or mismatched token
    duplicate: int = 0  # a second live connection for one token
    binary_frames: int = 0  # audio frames used
    text_frames: int = 0  # JSON text frames after the metadata
    malformed: int = 0  # dropped: odd length, empty, not JSON, invalid UTF-8, too big
    audio_bytes: int = 0
    closed: int = 0


class AudioForkSession:
    """The state of one fork connection, I/O-free.

    ``on_text`` / ``on_binary`` return ``False`` when the connection must be closed (refused);
    neither raises on any input.
    """

    def __init__(
        self,
        tokens: AudioForkTokens,
        hub: FrameHub,
        stats: AudioForkStats,
        *,
        url_token: str | None = None,
        live: set[str] | None = None,
        vad: VadSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = tokens
        self.hub = hub
        self.stats = stats
        self.vad = vad
        self.clock = clock
        self.live = live if live is not None else set()
        self.token: str | None = None
        self.route: ForkRoute | None = None
        self.metadata: dict[str, object] | None = None
        self.texts: list[dict[str, object]] = []
        self.streams: tuple[PartyStream, ...] = ()
        self.closed = False
        self.url_token = url_token
        if url_token is not None:
            self._authenticate(url_token)

    @property
    def authenticated(self) -> bool:
        return self.route is not None

    def _authenticate(self, token: str) -> bool:
        route = self.tokens.get(token)
        if route is None:
            self.stats.refused_token += 1
            return False
        if token in self.live:
            self.stats.duplicate += 1
            return False
        self.live.add(token)
        self.token = token
        self.route = route
        codec = RATE_CODECS[route.rate]
        self.streams = tuple(
            PartyStream(route.call_id, p, codec, self.hub, vad=self.vad, clock=self.clock)
            for p in route.parties
        )
        self.stats.authenticated += 1
        return True

    def on_text(self, text: str) -> bool:
        if self.closed:
            return False
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            self.stats.malformed += 1
            if self.metadata is None and not self.authenticated:
                self.stats.refused_token += 1  # no token can come from this first frame
                return False
            return True
        if self.metadata is None:
            self.metadata = obj
            token = obj.get("token")
            if self.authenticated:
                if token is not None and token != self.token:
                    self.stats.refused_token += 1  # URL and metadata disagree
                    return False
                return True
            if not isinstance(token, str):
                self.stats.refused_token += 1
                return False
            return self._authenticate(token)
        self.stats.text_frames += 1
        if len(self.texts) < 100:
            self.texts.append(obj)
        return True

    def on_binary(self, data: bytes) -> bool:
        if self.closed:
            return False
        route = self.route
        if route is None:
            self.stats.refused_token += 1  # audio before any token
            return False
        if not data or len(data) % route.frame_bytes:
            self.stats.malformed += 1
            return True
        now = self.clock()
        if len(self.streams) == 1:
            self.streams[0].on_pcm(data, now)
        else:
            pcm = np.frombuffer(data, dtype=_LE16)
            for ch, stream in enumerate(self.streams):
                stream.on_pcm(pcm[ch :: len(self.streams)].tobytes(), now)
        self.stats.binary_frames += 1
        self.stats.audio_bytes += len(data)
        return True

    def on_malformed(self) -> None:
        self.stats.malformed += 1

    def close(self) -> None:
        """End of the connection: close the party streams (open speech segments end)."""
        if self.closed:
            return
        self.closed = True
        if self.token is not None:
            self.live.discard(self.token)
        for s in self.streams:
            s.close()


@dataclass
class AudioForkServer:
    """aiohttp websocket server for mod_audio_fork connections."""

    hub: FrameHub
    tokens: AudioForkTokens = field(default_factory=AudioForkTokens)
    host: str = "127.0.0.1"
    port: int = 0
    path: str = PATH
    #: Peer IPs allowed to connect (FreeSWITCH's); ``None`` allows any.
    allowed_peers: frozenset[str] | None = frozenset({"127.0.0.1", "::1"})
    #: Seconds a connection without a URL token has to send its metadata.
    auth_timeout_s: float = 5.0
    vad: VadSettings = field(default_factory=VadSettings)
    clock: Callable[[], float] = time.monotonic
    stats: AudioForkStats = field(default_factory=AudioForkStats)
    _live: set[str] = field(default_factory=set)
    _sockets: dict[web.WebSocketResponse, AudioForkSession] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(self.path, self._handle)
        app.router.add_get(self.path + "/{token}", self._handle)
        return app

    def url(self, token: str | None = None) -> str:
        """The ``ws://`` URL for ``uuid_audio_fork ... start`` (token in the path)."""
        base = f"ws://{self.host}:{self.port}{self.path}"
        return base if token is None else f"{base}/{token}"

    async def start(self) -> int:
        """Listen (idempotent); returns the bound port."""
        if self._runner is not None:
            return self.port
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        addresses = runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        return self.port

    def sessions(self) -> list[AudioForkSession]:
        return list(self._sockets.values())

    async def release(self, token: str) -> ForkRoute | None:
        """Revoke ``token`` and close its connection, if any."""
        route = self.tokens.revoke(token)
        for ws, sess in list(self._sockets.items()):
            if sess.token == token:
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"released")
        return route

    async def close(self) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"shutdown")
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        st = self.stats
        peer = request.remote or ""
        if self.allowed_peers is not None and peer not in self.allowed_peers:
            st.refused_peer += 1
            log.warning("audio fork: refused connection from %s", peer)
            return web.Response(status=403, text="peer not allowed\n")
        url_token = request.match_info.get("token") or request.query.get("token")
        if url_token is not None:
            if url_token not in self.tokens:
                st.refused_token += 1
                return web.Response(status=403, text="unknown token\n")
            if url_token in self._live:
                st.duplicate += 1
                return web.Response(status=409, text="token already connected\n")
        ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        st.connections += 1
        sess = AudioForkSession(self.tokens, self.hub, st, url_token=url_token,
                                live=self._live, vad=self.vad, clock=self.clock)
        self._sockets[ws] = sess
        try:
            await self._serve(ws, sess)
        finally:
            sess.close()
            self._sockets.pop(ws, None)
            st.closed += 1
        return ws

    async def _serve(self, ws: web.WebSocketResponse, sess: AudioForkSession) -> None:
        if sess.url_token is not None and not sess.authenticated:
            # the token was revoked or taken between the check and the upgrade
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"token")
            return
        while not ws.closed:
            timeout = None if sess.authenticated else self.auth_timeout_s
            try:
                msg = await ws.receive(timeout=timeout)
            except TimeoutError:
                self.stats.refused_token += 1
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"no token")
                return
            if msg.type == WSMsgType.BINARY:
                ok = sess.on_binary(msg.data)
            elif msg.type == WSMsgType.TEXT:
                ok = sess.on_text(msg.data)
            elif msg.type == WSMsgType.ERROR:
                sess.on_malformed()  # bad UTF-8, too big, protocol error: aiohttp closes
                return
            else:  # CLOSE, CLOSING, CLOSED
                return
            if not ok:
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"refused")
                return
