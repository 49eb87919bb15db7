"""ARI models: every recorded event and REST body loads; fields match Asterisk's Swagger."""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from ariserver_captures import (
    captured_events,
    rest_exchanges,
    swagger_models,
    swagger_op_for,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earpiece.agi import ari_models
from earpiece.agi.ari_models import (
    EVENT_TYPES,
    AriEvent,
    AriModel,
    AsteriskInfo,
    Bridge,
    Channel,
    ChannelDestroyed,
    ChannelHangupRequest,
    Dial,
    Playback,
    StasisStart,
    parse_event,
    parse_event_json,
    parse_list,
)
from earpiece.errors import AriProtocolError

MODEL_CLASSES: list[type[AriModel]] = sorted(
    (
        obj
        for obj in vars(ari_models).values()
        if isinstance(obj, type) and issubclass(obj, AriModel) and obj is not AriModel
    ),
    key=lambda c: c.__name__,
)


def _channel_json(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "1795448937.30",
        "name": "PJSIP/cust1-00000001",
        "state": "Up",
        "protocol_id": "",
        "caller": {"name": "", "number": "5000"},
        "connected": {"name": "", "number": ""},
        "accountcode": "",
        "dialplan": {
            "context": "dialer",
            "exten": "agent",
            "priority": 1,
            "app_name": "Dial",
            "app_data": "PJSIP/agent1,20",
        },
        "creationtime": "2026-11-23T15:49:41.001+0000",
        "language": "en",
    }
    base.update(overrides)
    return base


# ------------------------------------------------------------------------ captured events


def test_every_captured_event_parses_into_its_typed_class() -> None:
    events = captured_events()
    assert len(events) > 400
    seen: set[str] = set()
    for name, obj, raw in events:
        event = parse_event(obj)
        assert type(event).__name__ == obj["type"], f"{name}: {obj['type']} not typed"
        assert type(event) is EVENT_TYPES[obj["type"]]
        assert event.raw is obj
        assert event.application == "assist"
        assert event.asterisk_id == obj["asterisk_id"]
        assert event.timestamp.tzinfo is not None
        # The raw frame text parses to the same event.
        assert parse_event_json(raw) == event
        seen.add(obj["type"])
    expected = {
        "StasisStart", "StasisEnd", "ChannelCreated", "ChannelDestroyed", "ChannelStateChange",
        "ChannelHangupRequest", "ChannelDtmfReceived", "ChannelDialplan", "ChannelVarset",
        "ChannelEnteredBridge", "ChannelLeftBridge", "BridgeCreated", "BridgeDestroyed", "Dial",
        "PlaybackStarted", "PlaybackContinuing", "PlaybackFinished", "ChannelConnectedLine",
        "ChannelCallerId", "DeviceStateChanged",
    }  # fmt: skip
    assert expected <= seen


def test_captured_event_values_are_typed() -> None:
    by_type: dict[str, list[AriEvent]] = {}
    for _name, obj, _raw in captured_events():
        by_type.setdefault(obj["type"], []).append(parse_event(obj))

    starts = [e for e in by_type["StasisStart"] if isinstance(e, StasisStart)]
    assert ("first-arg", "second arg") in {e.args for e in starts}
    assert all(isinstance(e.channel.creationtime, datetime) for e in starts)

    destroyed = [e for e in by_type["ChannelDestroyed"] if isinstance(e, ChannelDestroyed)]
    assert (16, "Normal Clearing") in {(e.cause, e.cause_txt) for e in destroyed}

    hangups = [e for e in by_type["ChannelHangupRequest"] if isinstance(e, ChannelHangupRequest)]
    assert (32, True) in {(e.cause, e.soft) for e in hangups}

    dials = [e for e in by_type["Dial"] if isinstance(e, Dial)]
    assert {"", "ANSWER"} <= {e.dialstatus for e in dials}
    assert all(isinstance(e.peer, Channel) for e in dials)

    digits = "".join(e.raw["digit"] for e in by_type["ChannelDtmfReceived"])
    assert digits == "1234#*"

    cont = by_type["PlaybackContinuing"][0]
    assert isinstance(cont, ari_models.PlaybackContinuing)
    assert cont.playback.next_media_uri == "sound:goodbye"

    entered = by_type["ChannelEnteredBridge"][0]
    assert isinstance(entered, ari_models.ChannelEnteredBridge)
    assert isinstance(entered.bridge.channels, tuple)
    assert entered.bridge.creationtime.tzinfo == UTC


# ------------------------------------------------------------------------ captured REST bodies


def _swagger_model_class(response_class: str) -> tuple[type[AriModel] | None, bool]:
    if response_class == "void":
        return None, False
    if response_class.startswith("List[") and response_class.endswith("]"):
        cls = getattr(ari_models, response_class[5:-1])
        return cls, True
    return getattr(ari_models, response_class), False


def test_every_captured_rest_body_loads_into_the_swagger_response_model() -> None:
    parsed: dict[str, int] = {}
    for ex in rest_exchanges():
        req, resp = ex.request, ex.response
        status, body = resp["status"], resp["body"]
        op = swagger_op_for(req["method"], req["path"])
        if not 200 <= status < 300:
            # Every REST error body is JSON {"message": str}.
            assert isinstance(json.loads(body)["message"], str), ex.label
            continue
        assert op is not None, f"{ex.label}: not in the Swagger apis"
        cls, many = _swagger_model_class(op.response_class)
        if cls is None:
            assert body == "", ex.label
            assert status == 204, ex.label
            continue
        data = json.loads(body)
        result: Any = parse_list(cls, data) if many else cls.parse(data)
        parsed[op.response_class] = parsed.get(op.response_class, 0) + 1
        if not many:
            assert isinstance(result, cls)
    assert {"Channel", "Bridge", "Playback", "Variable", "AsteriskInfo", "AsteriskPing",
            "Application", "List[Channel]", "List[Application]"} <= set(parsed), parsed  # fmt: skip


def test_external_media_response_carries_unicastrtp_channelvars() -> None:
    bodies = [
        ex.response["body"]
        for ex in rest_exchanges()
        if ex.request["path"] == "/ari/channels/externalMedia" and ex.response["status"] == 200
    ]
    assert bodies
    for body in bodies:
        chan = Channel.parse(json.loads(body))
        assert chan.name.startswith("UnicastRTP/")
        assert chan.channelvars is not None
        assert chan.channelvars["UNICASTRTP_LOCAL_ADDRESS"] == "127.0.0.1"
        assert 1 <= int(chan.channelvars["UNICASTRTP_LOCAL_PORT"]) <= 65535


def test_asterisk_info_is_fully_typed() -> None:
    body = next(
        ex.response["body"]
        for ex in rest_exchanges()
        if ex.request["path"] == "/ari/asterisk/info" and ex.response["status"] == 200
    )
    info = AsteriskInfo.parse(json.loads(body))
    assert info.system is not None and info.system.version == "22.10.1"
    assert info.config is not None and info.config.setid.user == ""
    assert info.config.max_channels is None
    assert info.status is not None
    assert info.status.startup_time == datetime(2026, 11, 23, 14, 50, 37, 566000, tzinfo=UTC)


# ------------------------------------------------------------------------ Swagger conformance

_PRIMITIVES: dict[str, object] = {
    "string": str,
    "int": int,
    "long": int,
    "double": float,
    "boolean": bool,
    "Date": datetime,
}


def _strip_optional(hint: object) -> object:
    args = typing.get_args(hint)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        assert len(rest) == 1
        return rest[0]
    return hint


def _compatible(swagger_type: str, hint: object) -> bool:
    hint = _strip_optional(hint)
    if swagger_type in _PRIMITIVES:
        return hint is _PRIMITIVES[swagger_type]
    if swagger_type == "object":
        return typing.get_origin(hint) is dict and typing.get_args(hint)[0] is str
    if swagger_type.startswith("List[") and swagger_type.endswith("]"):
        if typing.get_origin(hint) is not tuple:
            return False
        item, ellipsis = typing.get_args(hint)
        return ellipsis is Ellipsis and _compatible(swagger_type[5:-1], item)
    return isinstance(hint, type) and hint.__name__ == swagger_type


def _swagger_properties(name: str) -> dict[str, dict[str, Any]]:
    """Properties of Swagger model ``name`` including those of its parents (subTypes)."""
    models = swagger_models()
    props: dict[str, dict[str, Any]] = {}
    for parent_name, parent in models.items():
        if name in parent.get("subTypes", []) and parent_name != name:
            props.update(_swagger_properties(parent_name))
    props.update(models[name].get("properties", {}))
    return props


def _swagger_name(cls: type[AriModel]) -> str:
    return "Event" if cls is AriEvent else cls.__name__


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_model_fields_follow_swagger(cls: type[AriModel]) -> None:
    name = _swagger_name(cls)
    assert name in swagger_models(), f"{name} is not a Swagger model"
    props = _swagger_properties(name)
    hints = typing.get_type_hints(cls)
    by_key = {
        str(f.metadata.get("json", f.name)): f
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if not f.metadata.get("raw")
    }
    assert set(by_key) == set(props), f"{name}: fields {set(by_key) ^ set(props)} differ"
    for key, prop in props.items():
        f = by_key[key]
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        assert has_default != bool(prop.get("required")), f"{name}.{key}: required mismatch"
        assert _compatible(prop["type"], hints[f.name]), (
            f"{name}.{key}: Swagger {prop['type']} vs {hints[f.name]}"
        )


def test_every_swagger_event_type_that_can_be_typed_is_dispatched() -> None:
    event_subtypes = set(swagger_models()["Event"]["subTypes"])
    # RESTResponse belongs to ARI-over-websocket requests, which Earpiece does not use.
    assert event_subtypes - set(EVENT_TYPES) == {"RESTResponse"}
    assert set(EVENT_TYPES) <= event_subtypes


def _required_keys(cls: type[AriModel]) -> list[str]:
    out = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.metadata.get("raw"):
            continue
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            out.append(str(f.metadata.get("json", f.name)))
    return out


def test_missing_required_field_names_the_field_and_optional_ones_may_be_absent() -> None:
    samples: dict[str, dict[str, Any]] = {}
    for _name, obj, _raw in captured_events():
        samples.setdefault(obj["type"], obj)
    for kind, obj in samples.items():
        cls = EVENT_TYPES[kind]
        for key in _required_keys(cls):
            if key == "type":  # dispatch needs it: "event: missing required field 'type'"
                continue
            broken = {k: v for k, v in obj.items() if k != key}
            with pytest.raises(AriProtocolError, match=f"{kind}: missing required field '{key}'"):
                parse_event(broken)
        for key in set(obj) - set(_required_keys(cls)) - {"type"}:
            trimmed = {k: v for k, v in obj.items() if k != key}
            assert isinstance(parse_event(trimmed), cls)
    chan = _channel_json()
    for key in _required_keys(Channel):
        broken = {k: v for k, v in chan.items() if k != key}
        with pytest.raises(AriProtocolError, match=f"Channel: missing required field '{key}'"):
            Channel.parse(broken)


def test_errors_name_the_dotted_path() -> None:
    obj = {
        "type": "StasisStart",
        "application": "assist",
        "timestamp": "2026-11-23T15:28:29.366+0000",
        "args": ["ok", 7],
        "channel": _channel_json(),
    }
    with pytest.raises(
        AriProtocolError, match=r"^StasisStart\.args\[1\]: expected string, got integer$"
    ):
        parse_event(obj)
    obj["args"] = []
    obj["channel"] = _channel_json(caller={"name": "x"})
    with pytest.raises(
        AriProtocolError, match=r"StasisStart\.channel\.caller: missing required field 'number'"
    ):
        parse_event(obj)
    obj["channel"] = _channel_json(creationtime="yesterday")
    with pytest.raises(AriProtocolError, match=r"StasisStart\.channel\.creationtime: invalid date"):
        parse_event(obj)
    obj["channel"] = _channel_json(dialplan={**_channel_json()["dialplan"], "priority": True})
    with pytest.raises(
        AriProtocolError, match=r"dialplan\.priority: expected integer, got boolean"
    ):
        parse_event(obj)
    obj["channel"] = _channel_json(channelvars={"A": 1})
    with pytest.raises(AriProtocolError, match=r"channel\.channelvars\.A: expected string"):
        parse_event(obj)
    with pytest.raises(AriProtocolError, match="expected 'StasisStart'"):
        StasisStart.parse({**obj, "type": "StasisEnd", "channel": _channel_json()})
    with pytest.raises(AriProtocolError, match="event: missing required field 'type'"):
        parse_event({"application": "assist"})
    with pytest.raises(AriProtocolError, match="event: expected object, got array"):
        parse_event([])
    with pytest.raises(AriProtocolError, match="invalid JSON"):
        parse_event_json("{nope")
    with pytest.raises(AriProtocolError, match=r"List\[Bridge\]: expected array, got object"):
        parse_list(Bridge, {})


def test_unknown_event_type_gives_the_base_event_with_raw() -> None:
    obj = {
        "type": "ChannelFutureThing",
        "application": "assist",
        "timestamp": "2026-11-23T15:28:29.366+0000",
        "asterisk_id": "02:fc:00:00:00:01",
        "whatever": {"x": [1, 2]},
    }
    event = parse_event(obj)
    assert type(event) is AriEvent
    assert event.type == "ChannelFutureThing"
    assert event.raw["whatever"] == {"x": [1, 2]}
    assert event.timestamp == datetime(2026, 11, 23, 15, 28, 29, 366000, tzinfo=UTC)


def test_null_optional_is_absent_null_required_is_an_error() -> None:
    pb = {"id": "p", "media_uri": "sound:beep", "target_uri": "channel:c", "state": "queued"}
    assert Playback.parse({**pb, "language": None}).language is None
    with pytest.raises(AriProtocolError, match="Playback: null required field 'state'"):
        Playback.parse({**pb, "state": None})


def test_models_are_frozen() -> None:
    chan = Channel.parse(_channel_json())
    with pytest.raises(dataclasses.FrozenInstanceError):
        chan.id = "other"  # type: ignore[misc]


# ------------------------------------------------------------------------ Hypothesis

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)

field_names = st.sampled_from(
    sorted({key for cls in MODEL_CLASSES for key in cls.json_keys()} | {"type"})
)
json_objects = st.dictionaries(field_names | st.text(max_size=8), json_values, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=json_values | json_objects, cls=st.sampled_from(MODEL_CLASSES))
def test_arbitrary_json_raises_only_ari_protocol_error(obj: object, cls: type[AriModel]) -> None:
    for parse in (lambda: parse_event(obj), lambda: cls.parse(obj)):  # type: ignore[arg-type]
        try:
            parse()
        except AriProtocolError:
            pass


def _paths(obj: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


_SAMPLE_EVENTS = None


def _sample_events() -> list[dict[str, Any]]:
    global _SAMPLE_EVENTS
    if _SAMPLE_EVENTS is None:
        samples: dict[str, dict[str, Any]] = {}
        for _name, obj, _raw in captured_events():
            samples.setdefault(obj["type"], obj)
        _SAMPLE_EVENTS = list(samples.values())
    return _SAMPLE_EVENTS


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), value=json_values)
def test_mutated_captured_events_raise_only_ari_protocol_error(
    data: st.DataObject, value: object
) -> None:
    event = copy.deepcopy(data.draw(st.sampled_from(_sample_events())))
    path = data.draw(st.sampled_from(_paths(event)))
    target: Any = event
    for step in path[:-1]:
        target = target[step]
    if data.draw(st.booleans()) and isinstance(target, dict):
        del target[path[-1]]
    else:
        target[path[-1]] = value
    try:
        parsed = parse_event(event)
    except AriProtocolError:
        return
    assert isinstance(parsed, AriEvent)
    assert parsed.raw is event


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200) | st.binary(max_size=200))
def test_arbitrary_frame_text_raises_only_ari_protocol_error(text: str | bytes) -> None:
    try:
        parse_event_json(text)
    except AriProtocolError:
        pass
