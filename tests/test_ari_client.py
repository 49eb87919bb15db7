"""ARI client against an in-test aiohttp server that answers from the recorded Asterisk traffic."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from ariserver_captures import (
    Exchange,
    events_by_file,
    rest_exchanges,
    swagger_op_for,
)
from ariserver_fake import Answer, FakeAri
from hypothesis import given, settings
from hypothesis import strategies as st

from earpiece.agi import ari_models
from earpiece.agi.ari_client import (
    AriAuthError,
    AriClient,
    AriConflictError,
    AriHttpError,
    AriNotFoundError,
    encode_query,
)
from earpiece.agi.ari_models import (
    AriEvent,
    AriModel,
    Channel,
    parse_event,
    parse_list,
)
from earpiece.agi.settings import AriSettings
from earpiece.errors import AriProtocolError, PbxAuthError, PbxConnectionError, PbxError
from earpiece.secret import Secret

PASSWORD = "assist"  # what the recordings used (so their Authorization headers match)
GOOD_AUTH = "Basic " + base64.b64encode(b"assist:assist").decode()


def settings_for(url: str, *, password: str = PASSWORD, **kw: Any) -> AriSettings:
    values: dict[str, Any] = {
        "url": url,
        "username": "assist",
        "password": Secret(password),
        "app": "assist",
        "request_timeout_s": 3.0,
        "reconnect_initial_s": 0.01,
        "reconnect_max_s": 0.05,
    }
    values.update(kw)
    return AriSettings(**values)


async def until(cond: Callable[[], bool], within_s: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.005)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    server = FakeAri()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client(fake: FakeAri) -> AsyncIterator[AriClient]:
    c = AriClient(settings_for(f"http://127.0.0.1:{fake.port}"))
    try:
        yield c
    finally:
        await c.close()


# ------------------------------------------------------------------------ replay of recordings


def _split(value: str) -> list[str]:
    return value.split(",")


def client_call(c: AriClient, req: dict[str, Any]) -> Awaitable[Any]:
    """The client method call that issues the recorded request ``req``."""
    method, path, q = req["method"], req["path"], req["query"]
    parts = path.split("/")[2:]  # drop "", "ari"
    body = json.loads(req["body"]) if "body" in req else {}
    match (method, parts):
        case ("GET", ["channels"]):
            return c.list_channels()
        case ("POST", ["channels"]) if "endpoint" in q and ({"app", "extension"} & set(q)):
            return c.originate(
                q["endpoint"],
                app=q.get("app"),
                app_args=q.get("appArgs"),
                context=q.get("context"),
                extension=q.get("extension"),
                priority=int(q["priority"]) if "priority" in q else None,
                caller_id=q.get("callerId"),
                timeout=int(q["timeout"]) if "timeout" in q else None,
                channel_id=q.get("channelId"),
                other_channel_id=q.get("otherChannelId"),
                variables=body.get("variables"),
            )
        case ("POST", ["channels", "externalMedia"]) if {"external_host", "format"} <= set(q):
            return c.external_media(
                app=q["app"],
                external_host=q["external_host"],
                format=q["format"],
                channel_id=q.get("channelId"),
            )
        case ("GET", ["channels", cid]):
            return c.get_channel(cid)
        case ("DELETE", ["channels", cid]):
            return c.hangup_channel(cid, reason=q.get("reason"))
        case ("POST", ["channels", cid, "snoop"]):
            return c.snoop_channel(
                cid,
                app=q["app"],
                spy=q.get("spy", "none"),
                whisper=q.get("whisper", "none"),
                app_args=q.get("appArgs", ""),
                snoop_id=q.get("snoopId"),
            )
        case ("POST", ["channels", cid, "play"]) if "media" in q:
            return c.play(
                cid, _split(q["media"]), playback_id=q.get("playbackId"), lang=q.get("lang")
            )
        case ("POST", ["channels", cid, "dtmf"]):
            return c.send_dtmf(cid, q["dtmf"], duration=int(q["duration"]))
        case ("GET", ["channels", cid, "variable"]):
            return c.get_channel_var(cid, q["variable"])
        case ("POST", ["bridges"]):
            return c.create_bridge(
                type=q["type"], bridge_id=q.get("bridgeId"), name=q.get("name", "")
            )
        case ("POST", ["bridges", bid, "addChannel"]):
            return c.add_channel_to_bridge(bid, _split(q["channel"]))
        case ("DELETE", ["bridges", bid]):
            return c.destroy_bridge(bid)
        case ("GET", ["playbacks", pid]):
            return c.get_playback(pid)
        case ("DELETE", ["playbacks", pid]):
            return c.stop_playback(pid)
        case ("GET", ["applications"]):
            return c.list_applications()
        case ("GET", ["applications", name]):
            return c.get_application(name)
        case ("POST", ["applications", name, "subscription"]):
            return c.subscribe_application(name, _split(q["eventSource"]))
        case ("GET", ["asterisk", "info"]):
            return c.asterisk_info()
        case ("GET", ["asterisk", "ping"]):
            return c.ping()
    # Requests no typed method can make (a required parameter left out on purpose, an
    # unknown resource): the low-level request() with the recorded query.
    return c.request(method, path.removeprefix("/ari"), list(q.items()))


def expected_result(ex: Exchange) -> Any:
    body = ex.response["body"]
    if not body:
        return None
    op = swagger_op_for(ex.request["method"], ex.request["path"])
    assert op is not None
    rc = op.response_class
    if rc == "Variable":
        return json.loads(body)["value"]
    if rc.startswith("List["):
        return parse_list(getattr(ari_models, rc[5:-1]), json.loads(body))
    cls: type[AriModel] = getattr(ari_models, rc)
    return cls.parse(json.loads(body))


def assert_same_request(ex: Exchange, seen_target: str, seen_body: bytes) -> bool:
    """The request the client sent is the recorded one; True when byte-exact."""
    want = ex.request["target"]
    if seen_target == want:
        exact = True
    else:
        exact = False
        got_url, want_url = urlsplit(seen_target), urlsplit(want)
        assert got_url.path == want_url.path, ex.label
        got, wanted = dict(parse_qsl(got_url.query)), dict(parse_qsl(want_url.query))
        op = swagger_op_for(ex.request["method"], ex.request["path"])
        assert op is not None
        for key, value in got.items():
            if key in wanted:
                assert value == wanted[key], f"{ex.label}: {key}={value!r}"
            else:  # only an explicit Swagger default may be added
                assert op.params[key].get("defaultValue") == value, f"{ex.label}: extra {key}"
        assert set(wanted) <= set(got), f"{ex.label}: missing {set(wanted) - set(got)}"
    if "body" in ex.request:
        assert json.loads(seen_body) == json.loads(ex.request["body"]), ex.label
    else:
        assert seen_body == b"", ex.label
    return exact


async def test_replay_every_recorded_rest_exchange(fake: FakeAri) -> None:
    url = f"http://127.0.0.1:{fake.port}"
    good = AriClient(settings_for(url))
    wrong = AriClient(settings_for(url, password="wrong-password"))
    exchanges = rest_exchanges()
    inexact: list[str] = []
    try:
        for ex in exchanges:
            req, resp = ex.request, ex.response
            recorded_auth = dict(req["headers"]).get("Authorization")
            c = good if recorded_auth == GOOD_AUTH else wrong
            if resp["status"] != 401:
                fake.expect(resp["status"], resp["body"])
            before = len(fake.requests)
            status = resp["status"]
            if 200 <= status < 300:
                result = await client_call(c, req)
                assert result == expected_result(ex), ex.label
            else:
                message = json.loads(resp["body"])["message"]
                with pytest.raises(AriHttpError) as info:
                    await client_call(c, req)
                err = info.value
                assert (err.status, err.message) == (status, message), ex.label
                assert err.method == req["method"]
                assert isinstance(err, PbxError)
                kind = {401: AriAuthError, 404: AriNotFoundError, 409: AriConflictError}
                if status in kind:
                    assert isinstance(err, kind[status]), ex.label
                if status == 401:
                    assert isinstance(err, PbxAuthError)
            assert len(fake.requests) == before + 1, ex.label
            seen = fake.requests[-1]
            assert seen.method == req["method"], ex.label
            if not assert_same_request(ex, seen.target, seen.body):
                inexact.append(ex.request["target"])
    finally:
        await good.close()
        await wrong.close()
    assert not fake.queue
    assert len(exchanges) > 80
    # Only the snoops recorded without whisper= differ (the client always sends whisper).
    assert all("/snoop?" in t and "whisper=" not in t for t in inexact), inexact
    assert len(inexact) == 3


# ------------------------------------------------------------------------ every method vs Swagger

CHANNEL = json.dumps(
    {
        "id": "c1",
        "name": "PJSIP/cust1-00000001",
        "state": "Up",
        "protocol_id": "",
        "caller": {"name": "", "number": ""},
        "connected": {"name": "", "number": ""},
        "accountcode": "",
        "dialplan": {"context": "d", "exten": "s", "priority": 1, "app_name": "", "app_data": ""},
        "creationtime": "2026-11-23T15:28:29.365+0000",
        "language": "en",
    }
)
BRIDGE = json.dumps(
    {
        "id": "b1",
        "technology": "simple_bridge",
        "bridge_type": "mixing",
        "bridge_class": "stasis",
        "creator": "Stasis",
        "name": "",
        "channels": [],
        "creationtime": "2026-11-23T15:29:27.694+0000",
        "video_mode": "talker",
    }
)
PLAYBACK = json.dumps(
    {"id": "p1", "media_uri": "sound:beep", "target_uri": "channel:c1", "state": "queued"}
)
APP = json.dumps(
    {
        "name": "assist",
        "channel_ids": [],
        "bridge_ids": [],
        "endpoint_ids": [],
        "device_names": [],
        "events_allowed": [],
        "events_disallowed": [],
    }
)
INFO = '{"system":{"version":"22.10.1","entity_id":"02:fc:00:00:00:01"}}'
PING = '{"ping":"pong","timestamp":"2026-11-23T15:28:06.559+0000","asterisk_id":"x"}'

# (method name, call, status, body, expected method, expected target)
CALLS: list[tuple[str, Callable[[AriClient], Awaitable[Any]], int, str, str, str]] = [
    ("list_channels", lambda c: c.list_channels(), 200, f"[{CHANNEL}]", "GET", "/ari/channels"),
    ("get_channel", lambda c: c.get_channel("c 1/x"), 200, CHANNEL, "GET",
     "/ari/channels/c%201%2Fx"),
    ("originate", lambda c: c.originate(
        "PJSIP/cust1", context="dialer", extension="agent", priority=1, caller_id="D <5000>",
        timeout=20, channel_id="c1", other_channel_id="c2", variables={"FX": "1"}),
     200, CHANNEL, "POST",
     "/ari/channels?endpoint=PJSIP%2Fcust1&context=dialer&extension=agent&priority=1"
     "&callerId=D%20%3C5000%3E&timeout=20&channelId=c1&otherChannelId=c2"),
    ("hangup_channel", lambda c: c.hangup_channel("c1"), 204, "", "DELETE",
     "/ari/channels/c1?reason=normal"),
    ("answer_channel", lambda c: c.answer_channel("c1"), 204, "", "POST",
     "/ari/channels/c1/answer"),
    ("snoop_channel", lambda c: c.snoop_channel(
        "c1", app="assist", spy="in", app_args="fork,c1", snoop_id="s1"), 200, CHANNEL, "POST",
     "/ari/channels/c1/snoop?spy=in&whisper=none&app=assist&appArgs=fork%2Cc1&snoopId=s1"),
    ("external_media", lambda c: c.external_media(
        app="assist", external_host="127.0.0.1:4000", format="slin16", channel_id="e1",
        encapsulation="audiosocket", transport="tcp", connection_type="client",
        data="0123"), 200, CHANNEL, "POST",
     "/ari/channels/externalMedia?app=assist&external_host=127.0.0.1%3A4000&format=slin16"
     "&channelId=e1&encapsulation=audiosocket&transport=tcp&connection_type=client"
     "&data=0123"),
    ("get_channel_var", lambda c: c.get_channel_var("c1", "UNICASTRTP_LOCAL_PORT"), 200,
     '{"value":"18592"}', "GET", "/ari/channels/c1/variable?variable=UNICASTRTP_LOCAL_PORT"),
    ("set_channel_var", lambda c: c.set_channel_var("c1", "EP_TAG", "a b&c"), 204, "",
     "POST", "/ari/channels/c1/variable?variable=EP_TAG&value=a%20b%26c"),
    ("play", lambda c: c.play("c1", "sound:beep", playback_id="p1", lang="en"), 201,
     PLAYBACK, "POST", "/ari/channels/c1/play?media=sound%3Abeep&lang=en&playbackId=p1"),
    ("send_dtmf", lambda c: c.send_dtmf("c1", "12#", before=0, between=100, duration=80,
                                        after=10), 204, "", "POST",
     "/ari/channels/c1/dtmf?dtmf=12%23&before=0&between=100&duration=80&after=10"),
    ("list_bridges", lambda c: c.list_bridges(), 200, f"[{BRIDGE}]", "GET", "/ari/bridges"),
    ("get_bridge", lambda c: c.get_bridge("b1"), 200, BRIDGE, "GET", "/ari/bridges/b1"),
    ("create_bridge", lambda c: c.create_bridge(), 200, BRIDGE, "POST",
     "/ari/bridges?type=mixing"),
    ("add_channel_to_bridge", lambda c: c.add_channel_to_bridge(
        "b1", "c1", role="fork", absorb_dtmf=True, mute=False,
        inhibit_connected_line_updates=True), 204, "", "POST",
     "/ari/bridges/b1/addChannel?channel=c1&role=fork&absorbDTMF=true&mute=false"
     "&inhibitConnectedLineUpdates=true"),
    ("remove_channel_from_bridge", lambda c: c.remove_channel_from_bridge("b1", ["c1", "c2"]),
     204, "", "POST", "/ari/bridges/b1/removeChannel?channel=c1%2Cc2"),
    ("destroy_bridge", lambda c: c.destroy_bridge("b1"), 204, "", "DELETE", "/ari/bridges/b1"),
    ("get_playback", lambda c: c.get_playback("p1"), 200, PLAYBACK, "GET", "/ari/playbacks/p1"),
    ("stop_playback", lambda c: c.stop_playback("p1"), 204, "", "DELETE",
     "/ari/playbacks/p1"),
    ("list_applications", lambda c: c.list_applications(), 200, f"[{APP}]", "GET",
     "/ari/applications"),
    ("get_application", lambda c: c.get_application("assist"), 200, APP, "GET",
     "/ari/applications/assist"),
    ("subscribe_application", lambda c: c.subscribe_application("assist", "channel:c1"), 200,
     APP, "POST", "/ari/applications/assist/subscription?eventSource=channel%3Ac1"),
    ("asterisk_info", lambda c: c.asterisk_info(), 200, INFO, "GET", "/ari/asterisk/info"),
    ("ping", lambda c: c.ping(), 200, PING, "GET", "/ari/asterisk/ping"),
]  # fmt: skip

LIFECYCLE = {"start", "close", "wait_connected", "request", "app_taken", "ensure_app_free"}

_SAMPLE_FRAMES = [
    '{"type":"StasisEnd","application":"assist","timestamp":"2026-11-23T15:28:34.675+0000",'
    + '"channel":'
    + CHANNEL
    + "}",
    '{"type":"Whatever","application":"assist","timestamp":"2026-11-23T15:28:34Z"}',
]


def _rest_methods() -> set[str]:
    return {
        name
        for name, fn in inspect.getmembers(AriClient, inspect.iscoroutinefunction)
        if not name.startswith("_") and name not in LIFECYCLE
    }


def test_every_rest_method_is_exercised() -> None:
    assert {name for name, *_ in CALLS} == _rest_methods()


async def test_every_method_hits_a_swagger_operation_with_swagger_params(
    fake: FakeAri, client: AriClient
) -> None:
    for name, call, status, body, method, target in CALLS:
        fake.expect(status, body)
        result = await call(client)
        seen = fake.requests[-1]
        assert (seen.method, seen.target) == (method, target), name
        assert seen.authorization == GOOD_AUTH
        # The path and every query parameter exist in Asterisk's Swagger for this operation.
        encoded_path = urlsplit(seen.target).path
        op = swagger_op_for(seen.method, encoded_path)
        assert op is not None, f"{name}: {seen.method} {encoded_path} not in Swagger"
        query_params = {k for k, p in op.params.items() if p["paramType"] == "query"}
        assert set(seen.query) <= query_params, f"{name}: {set(seen.query) - query_params}"
        required = {k for k in query_params if op.params[k].get("required")}
        assert required <= set(seen.query), f"{name}: missing {required - set(seen.query)}"
        for key, value in seen.query.items():
            allowed = op.params[key].get("allowableValues", {}).get("values")
            if allowed and not op.params[key].get("allowMultiple"):
                assert value in allowed, f"{name}: {key}={value!r}"
            if op.params[key]["dataType"] == "boolean":
                assert value in ("true", "false")
            if op.params[key]["dataType"] in ("int", "long"):
                int(value)
        if seen.body:
            assert any(p["paramType"] == "body" for p in op.params.values()), name
            assert json.loads(seen.body) == {"variables": {"FX": "1"}}
        # The typed result matches Swagger's response class.
        rc = op.response_class
        if rc == "void":
            assert result is None, name
        elif rc == "Variable":
            assert result == "18592"
        elif rc.startswith("List["):
            assert [type(r).__name__ for r in result] == [rc[5:-1]], name
        else:
            assert type(result).__name__ == rc, name


async def test_media_list_is_comma_joined_like_the_recording(
    fake: FakeAri, client: AriClient
) -> None:
    fake.expect(201, PLAYBACK)
    await client.play("fx-pb-1", ["sound:beep", "sound:goodbye"], playback_id="fx-pb-play2")
    want = "/ari/channels/fx-pb-1/play?media=sound%3Abeep%2Csound%3Agoodbye&playbackId=fx-pb-play2"
    assert fake.requests[-1].target == want


def test_encode_query_and_base_url() -> None:
    assert encode_query([("a", None), ("b", True), ("c", ["x", "y"]), ("d", 3)]) == (
        "b=true&c=x%2Cy&d=3"
    )
    c1 = AriClient(settings_for("http://h:1/ari/"))
    c2 = AriClient(settings_for("http://h:1"))
    assert str(c1.url("/channels")) == str(c2.url("/channels")) == "http://h:1/ari/channels"
    assert str(c2.events_url()) == "http://h:1/ari/events?app=assist&subscribeAll=true"
    c3 = AriClient(settings_for("http://h:1", subscribe_all=True))
    assert str(c3.events_url()).endswith("subscribeAll=true")


# ------------------------------------------------------------------------ REST failure modes


async def test_non_json_error_body_and_bad_success_bodies(fake: FakeAri, client: AriClient) -> None:
    fake.expect(503, "<html><body>Service  Unavailable</body></html>")
    with pytest.raises(AriHttpError) as info:
        await client.ping()
    assert info.value.status == 503
    assert info.value.message == "<html><body>Service Unavailable</body></html>"
    assert not isinstance(info.value, (AriNotFoundError, PbxAuthError))

    fake.expect(200, "not json")
    with pytest.raises(AriProtocolError, match="not JSON"):
        await client.ping()
    fake.expect(200, '{"ping": 5}')
    with pytest.raises(AriProtocolError, match="AsteriskPing"):
        await client.ping()
    fake.expect(200, "[1]")
    with pytest.raises(AriProtocolError, match=r"List\[Channel\]\[0\]: expected object"):
        await client.list_channels()
    fake.expect(204, "")
    with pytest.raises(AriProtocolError, match="empty body"):
        await client.get_channel("c1")
    requests = len(fake.requests)
    with pytest.raises(ValueError, match="empty ARI resource id"):
        await client.get_channel("")
    assert len(fake.requests) == requests


async def test_timeout_and_refused_connection_raise_pbx_connection_error(
    fake: FakeAri,
) -> None:
    slow = AriClient(settings_for(f"http://127.0.0.1:{fake.port}", request_timeout_s=0.2))
    fake.expect(200, PING, delay_s=0.6)
    try:
        with pytest.raises(PbxConnectionError):
            await slow.ping()
    finally:
        await slow.close()

    refused = AriClient(settings_for(f"http://127.0.0.1:{_unused_port()}"))
    try:
        with pytest.raises(PbxConnectionError, match="GET /asterisk/ping"):
            await refused.ping()
    finally:
        await refused.close()


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_given_session_is_used_and_not_closed(fake: FakeAri) -> None:
    async with aiohttp.ClientSession() as session:
        c = AriClient(settings_for(f"http://127.0.0.1:{fake.port}"), session=session)
        fake.expect(200, PING)
        assert (await c.ping()).ping == "pong"
        await c.close()
        assert not session.closed


# ------------------------------------------------------------------------ events websocket


class Sink:
    def __init__(self) -> None:
        self.events: list[AriEvent] = []

    def on_event(self, event: AriEvent) -> None:
        self.events.append(event)


async def test_captured_events_arrive_typed_in_order(fake: FakeAri) -> None:
    for name, frames in sorted(events_by_file().items()):
        fake.ws_frames = list(frames)
        sink = Sink()
        c = AriClient(settings_for(f"http://127.0.0.1:{fake.port}"), on_event=sink.on_event)
        await c.start()
        try:
            n = len(frames)
            await until(lambda s=sink, n=n: len(s.events) == n, what=name)  # type: ignore[misc]
            assert [e.raw for e in sink.events] == [json.loads(f) for f in frames], name
            assert [e for e in sink.events] == [parse_event(json.loads(f)) for f in frames]
            assert c.stats.malformed_frames == 0
            assert c.stats.events == c.stats.frames == len(frames)
        finally:
            await c.close()
        await fake.drop_websockets()
    ws_requests = [r for r in fake.requests if r.websocket]
    assert ws_requests
    op = swagger_op_for("GET", "/ari/events")
    assert op is not None and op.nickname == "eventWebsocket"
    for r in ws_requests:
        assert r.target == "/ari/events?app=assist&subscribeAll=true"
        assert set(r.query) <= set(op.params)
        assert r.authorization == GOOD_AUTH


async def test_reconnect_after_server_drop_resyncs_and_events_keep_flowing(
    fake: FakeAri,
) -> None:
    frames = events_by_file()["stasis_start_end.jsonl"]
    half = len(frames) // 2
    channels = [ex for ex in rest_exchanges() if ex.request["target"] == "/ari/channels/fx-sse-2"]
    chan_body = channels[0].response["body"]
    # A slow resync: the frames the server sends right after the upgrade queue up meanwhile.
    fake.routes[("GET", "/ari/channels")] = Answer(200, f"[{chan_body}]", delay_s=0.05)
    fake.ws_frames = list(frames[:half])
    log: list[str] = []
    events: list[AriEvent] = []
    resyncs: list[list[Channel]] = []
    client_box: list[AriClient] = []

    async def on_connected() -> None:
        resyncs.append(await client_box[0].list_channels())
        log.append("resync")

    def on_event(event: AriEvent) -> None:
        events.append(event)
        log.append("event")

    c = AriClient(
        settings_for(f"http://127.0.0.1:{fake.port}"),
        on_event=on_event,
        on_connected=on_connected,
    )
    client_box.append(c)
    await c.start()
    try:
        await c.wait_connected(timeout_s=5)
        await until(lambda: len(events) == half, what="first half")
        assert resyncs[0][0].id == "fx-sse-2"
        fake.ws_frames = list(frames[half:-1])  # sent on the next connect
        await fake.drop_websockets()
        await until(lambda: len(events) == len(frames) - 1, what="second connection")
        assert fake.ws_connects == 2
        await fake.push(frames[-1])  # and the new socket keeps delivering
        await until(lambda: len(events) == len(frames), what="pushed frame")
        assert [e.raw for e in events] == [json.loads(f) for f in frames]
        # on_connected ran (and finished) after each connect, before that socket's events.
        n_second = len(frames) - half
        assert log == ["resync"] + ["event"] * half + ["resync"] + ["event"] * n_second
        assert (c.stats.connects, c.stats.disconnects) == (2, 1)
        assert c.connected
    finally:
        await c.close()
    assert not c.connected
    connects = fake.ws_connects
    await asyncio.sleep(0.1)
    assert fake.ws_connects == connects  # no reconnect after close()


async def test_malformed_frames_are_counted_and_dropped(fake: FakeAri) -> None:
    good = events_by_file()["dtmf.jsonl"][0]
    events: list[AriEvent] = []
    c = AriClient(settings_for(f"http://127.0.0.1:{fake.port}"), on_event=events.append)
    await c.start()
    try:
        await c.wait_connected(timeout_s=5)
        for frame in (
            "not json",
            "[1, 2]",
            '{"type": 7}',
            '{"type":"StasisStart","application":"assist","timestamp":"2026-11-23T15:28:29Z"}',
            b"\x00\x01binary",
            '{"type":"ChannelVarset","application":"assist","timestamp":"never"}',
            good,
        ):
            await fake.push(frame)
        await until(lambda: c.stats.frames == 7, what="7 frames")
        assert c.stats.malformed_frames == 6
        assert c.stats.events == 1
        assert [e.raw for e in events] == [json.loads(good)]
        assert c.connected and c.stats.disconnects == 0 and fake.open_websockets() == 1
    finally:
        await c.close()


async def test_failing_callbacks_do_not_stop_the_stream(fake: FakeAri) -> None:
    frames = events_by_file()["dtmf.jsonl"][:5]
    fake.ws_frames = list(frames)
    got: list[str] = []

    def on_event(event: AriEvent) -> None:
        got.append(event.type)
        if len(got) == 2:
            raise RuntimeError("consumer bug")

    async def on_connected() -> None:
        raise RuntimeError("resync bug")

    c = AriClient(
        settings_for(f"http://127.0.0.1:{fake.port}"), on_event=on_event, on_connected=on_connected
    )
    await c.start()
    try:
        await until(lambda: len(got) == 5)
        assert c.stats.handler_errors == 2
        assert c.connected
    finally:
        await c.close()


async def test_events_may_arrive_before_the_rest_response(fake: FakeAri) -> None:
    start = next(f for f in events_by_file()["snoop_spy_in.jsonl"] if "Snoop/" in f)
    order: list[str] = []
    c = AriClient(
        settings_for(f"http://127.0.0.1:{fake.port}"),
        on_event=lambda e: order.append(f"event:{e.type}"),
    )
    await c.start()
    try:
        await c.wait_connected(timeout_s=5)
        fake.queue.append(Answer(200, CHANNEL))
        fake.queue[-1].push_before = [start]
        fake.queue[-1].delay_s = 0.1
        await c.snoop_channel("fx-snoop_spy_in-1", app="assist", spy="in")
        order.append("rest:snoop")
        assert order == ["event:StasisStart", "rest:snoop"]
    finally:
        await c.close()


async def test_websocket_bad_credentials_retry_and_report_auth_error(
    fake: FakeAri, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    c = AriClient(settings_for(f"http://127.0.0.1:{fake.port}", password="wrong-password"))
    await c.start()
    try:
        await until(lambda: c.stats.auth_failures >= 3, what="retries")
        with pytest.raises(PbxAuthError, match="401"):
            await c.wait_connected(timeout_s=0.05)
        assert not c.connected
    finally:
        await c.close()
    assert "wrong-password" not in caplog.text


async def test_unreachable_server_retries_until_close() -> None:
    c = AriClient(settings_for(f"http://127.0.0.1:{_unused_port()}"))
    await c.start()
    try:
        await until(lambda: c.stats.connect_failures >= 3, what="retries")
        with pytest.raises(PbxConnectionError):
            await c.wait_connected(timeout_s=0.05)
    finally:
        t0 = time.monotonic()
        await c.close()
        assert time.monotonic() - t0 < 1.0
    failures = c.stats.connect_failures
    await asyncio.sleep(0.1)
    assert c.stats.connect_failures == failures


def test_backoff_is_exponential_with_full_jitter() -> None:
    c = AriClient(settings_for("http://h:1", reconnect_initial_s=0.5, reconnect_max_s=30.0))
    random.seed(1234)
    for attempt in range(12):
        ceiling = min(30.0, 0.5 * 2**attempt)
        samples = [c.backoff_delay(attempt) for _ in range(400)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > 0.9 * ceiling  # spread over the whole range...
        assert min(samples) < 0.1 * ceiling  # ...down to zero (full jitter)
    assert 0.0 <= c.backoff_delay(10_000) <= 30.0


# ------------------------------------------------------------------------ secrets


async def test_password_never_appears_in_logs_errors_or_repr(
    fake: FakeAri, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Sup3r-Secret-Pw"
    token = base64.b64encode(f"assist:{secret}".encode()).decode()
    caplog.set_level(logging.DEBUG)
    fake.expected_auth = f"Basic {token}"
    fake.ws_frames = ["garbage", events_by_file()["dtmf.jsonl"][0]]
    c = AriClient(settings_for(f"http://127.0.0.1:{fake.port}", password=secret))
    texts: list[str] = [repr(c.settings), repr(c.stats)]
    await c.start()
    try:
        await c.wait_connected(timeout_s=5)
        await until(lambda: c.stats.frames == 2)
        fake.expect(404, '{"message":"Channel not found"}')
        with pytest.raises(AriNotFoundError) as info:
            await c.get_channel("nope")
        texts.append(str(info.value))
        assert fake.requests[-1].authorization == f"Basic {token}"
        await fake.drop_websockets()
        await until(lambda: fake.ws_connects == 2)
    finally:
        await c.close()
    bad = AriClient(settings_for(f"http://127.0.0.1:{fake.port}", password=secret + "x"))
    try:
        with pytest.raises(AriAuthError) as auth_info:
            await bad.ping()
        texts.append(str(auth_info.value))
        await bad.start()
        await until(lambda: bad.stats.auth_failures >= 1)
        texts.append(bad.stats.last_error)
    finally:
        await bad.close()
    texts.append(caplog.text)
    assert "ARI events websocket connected" in caplog.text  # logging did run
    for text in texts:
        assert secret not in text
        assert token not in text


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(st.text(max_size=120) | st.sampled_from(_SAMPLE_FRAMES), max_size=8))
def test_any_frame_text_is_counted_never_raised(frames: list[str]) -> None:
    got: list[AriEvent] = []
    c = AriClient(settings_for("http://127.0.0.1:9"), on_event=got.append)
    for frame in frames:
        c.dispatch_text(frame)
    assert c.stats.frames == len(frames)
    assert c.stats.events + c.stats.malformed_frames == len(frames)
    assert len(got) == c.stats.events
