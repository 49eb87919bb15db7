"""FastAGI wire format, server and the route/tag hooks, against a fake Asterisk on TCP."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earpiece.agi.fastagi import (
    AgiCommand,
    AgiCommandFramer,
    AgiEnvironment,
    AgiHangup,
    AgiReply,
    AgiRequest,
    AgiStreamFramer,
    quote_arg,
    split_args,
)
from earpiece.agi.fastagi_server import AgiConnectionClosed, AgiSession, FastAgiServer
from earpiece.agi.routing import (
    RouteDecision,
    RouteQuery,
    RuleResolver,
    make_handlers,
)
from earpiece.agi.settings import AgiSettings, RouteRule
from earpiece.errors import AgiProtocolError


def asterisk_env(script: str, *, args: tuple[str, ...] = (), uniqueid: str = "1763912345.42",
                 channel: str = "PJSIP/cust1-00000007", callerid: str = "5551234",
                 exten: str = "agent", context: str = "dialer", host: str = "earpiece") -> bytes:
    """The bytes Asterisk 22 writes on a FastAGI connect (launch_netscript + setup_env)."""
    lines = [
        "agi_network: yes",
        f"agi_network_script: {script}",
        f"agi_request: agi://{host}:4573/{script}",
        f"agi_channel: {channel}",
        "agi_language: en",
        "agi_type: PJSIP",
        f"agi_uniqueid: {uniqueid}",
        "agi_version: 22.10.1",
        f"agi_callerid: {callerid}",
        "agi_calleridname: Customer One",
        "agi_callingpres: 0",
        "agi_callingani2: 0",
        "agi_callington: 0",
        "agi_callingtns: 0",
        "agi_dnid: unknown",
        "agi_rdnis: unknown",
        f"agi_context: {context}",
        f"agi_extension: {exten}",
        "agi_priority: 2",
        "agi_enhanced: 0.0",
        "agi_accountcode: ",
        "agi_threadid: 140234567890",
    ]
    lines += [f"agi_arg_{i}: {a}" for i, a in enumerate(args, 1)]
    return ("\n".join(lines) + "\n\n").encode()


# --------------------------------------------------------------------------------------------
# Environment and request
# --------------------------------------------------------------------------------------------


def test_environment_parses_asterisk_block_byte_exact() -> None:
    raw = asterisk_env("tag?campaign=spring&customer=42", args=("agent=1001", "two words"))
    env = AgiEnvironment.parse(raw)
    assert bytes(env) == raw
    assert env.network is True
    assert env.channel == "PJSIP/cust1-00000007"
    assert env.uniqueid == "1763912345.42"
    assert env.callerid == "5551234"
    assert env.dnid == ""  # "unknown" means none
    assert env.accountcode == ""  # "agi_accountcode: " with a trailing space
    assert env.get("agi_version") == "22.10.1"
    assert env.get("version") == "22.10.1"
    assert env.args == ("agent=1001", "two words")
    assert "channel" in env and "agi_nosuch" not in env


def test_request_from_network_script() -> None:
    env = AgiEnvironment.parse(asterisk_env("tag?campaign=spring&customer=4%202&agent=",
                                            args=("x",)))
    req = AgiRequest.from_environment(env)
    assert req.script == "tag"
    assert req.params == (("campaign", "spring"), ("customer", "4 2"), ("agent", ""))
    assert req.param("customer") == "4 2"
    assert req.param("nosuch", "d") == "d"
    assert req.args == ("x",)


def test_request_falls_back_to_agi_request_url() -> None:
    raw = b"agi_request: agi://10.0.0.5:4573/route?direction=inbound\nagi_channel: PJSIP/x-1\n\n"
    req = AgiRequest.from_environment(AgiEnvironment.parse(raw))
    assert req.script == "route"
    assert req.param("direction") == "inbound"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "end with an empty line"),
        (b"\n", "end with an empty line"),
        (b"agi_channel: x\n", "end with an empty line"),
        (b"agi_channel: x\n\nagi_type: y\n\n", "empty line inside"),
        (b"channel: x\n\n", "bad environment key"),
        (b"agi_channel x\n\n", "separator"),
        (b"agi_channel: x\nagi_channel: y\n\n", "duplicate"),
        (b"agi_channel: a\x00b\n\n", "NUL"),
        (b"agi_bad key: x\n\n", "bad environment key"),
    ],
)
def test_environment_errors_are_precise(raw: bytes, why: str) -> None:
    with pytest.raises(AgiProtocolError, match=why):
        AgiEnvironment.parse(raw)


@pytest.mark.parametrize(
    ("script", "why"),
    [("", "names no script"), ("?a=1", "names no script"), ("tag?novalue", "bad query"),
     ("tag?a=%ff", "bad query"), ("t a", "bad script")],
)
def test_request_errors(script: str, why: str) -> None:
    with pytest.raises(AgiProtocolError, match=why):
        AgiRequest.parse_script(script)


def test_non_utf8_caller_name_round_trips() -> None:
    raw = b"agi_request: agi://h/route\nagi_calleridname: Jos\xe9\n\n"
    env = AgiEnvironment.parse(raw)
    assert bytes(env) == raw
    assert env.calleridname.startswith("Jos")


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "wire"),
    [
        (AgiCommand.set_variable("EARPIECE_ROUTE", "sales"),
         b"SET VARIABLE EARPIECE_ROUTE sales\n"),
        (AgiCommand.set_variable("V", "two words"), b'SET VARIABLE V "two words"\n'),
        (AgiCommand.set_variable("V", ""), b'SET VARIABLE V ""\n'),
        (AgiCommand.set_variable("V", 'a"b\\c'), b'SET VARIABLE V "a\\"b\\\\c"\n'),
        (AgiCommand.get_variable("DIALSTATUS"), b"GET VARIABLE DIALSTATUS\n"),
        (AgiCommand.verbose("hello world", 3), b'VERBOSE "hello world" 3\n'),
        (AgiCommand.noop(), b"NOOP\n"),
        (AgiCommand.exec("Dial", "PJSIP/agent1,20"), b"EXEC Dial PJSIP/agent1,20\n"),
    ],
)
def test_command_serialisation(command: AgiCommand, wire: bytes) -> None:
    assert bytes(command) == wire
    assert AgiCommand.parse(wire) == command


def test_split_args_follows_asterisk_parse_args() -> None:
    # res_agi.c parse_args: quotes group, backslash escapes, a quote mid-word does not split.
    assert split_args('SET VARIABLE X "a b"') == ["SET", "VARIABLE", "X", "a b"]
    assert split_args('a"b c"d e') == ["ab cd", "e"]
    assert split_args('x "" y') == ["x", "", "y"]
    assert split_args("a\\ b\tc") == ["a b", "c"]
    assert split_args('"\\"q\\""') == ['"q"']
    assert split_args("   ") == []


def test_command_parse_is_case_insensitive_and_rejects_unknown() -> None:
    assert AgiCommand.parse(b"set variable A b\n").name == ("SET", "VARIABLE")
    assert AgiCommand.parse(b"DATABASE GET fam key\n") == AgiCommand(("DATABASE", "GET"),
                                                                     ("fam", "key"))
    with pytest.raises(AgiProtocolError, match="unknown command"):
        AgiCommand.parse(b"FROBNICATE now\n")
    with pytest.raises(AgiProtocolError):
        AgiCommand.parse(b"\n")


def test_command_arguments_cannot_carry_newlines() -> None:
    with pytest.raises(AgiProtocolError):
        AgiCommand.set_variable("X", "line1\nSET VARIABLE Y 1")
    with pytest.raises(AgiProtocolError):
        quote_arg("a\rb")


# --------------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------------


def test_reply_result_data_and_endpos() -> None:
    r = AgiReply.parse(b"200 result=1 (sales) endpos=1234\n")
    assert (r.code, r.result, r.data, r.attribute("endpos")) == (200, 1, "sales", "1234")
    assert r.ok
    r = AgiReply.parse(b"200 result=0 endpos=8000\n")
    assert (r.result, r.data, r.attributes) == (0, None, (("endpos", "8000"),))
    r = AgiReply.parse(b"200 result=-1\n")
    assert r.result == -1 and not r.ok
    r = AgiReply.parse(b"200 result=1 (a (nested) value)\n")
    assert r.data == "a (nested) value"
    r = AgiReply.parse(b"200 result=0 (timeout)\n")
    assert r.data == "timeout"
    r = AgiReply.parse(b"200 result=1 (speech) endpos=0 results=2 0 yes\n")
    assert r.attribute("results") == "2 0 yes"


def test_reply_errors_510_511_520() -> None:
    r = AgiReply.parse(b"510 Invalid or unknown command\n")
    assert (r.code, r.text, r.result) == (510, "Invalid or unknown command", None)
    assert bytes(AgiReply.invalid_command()) == b"510 Invalid or unknown command\n"
    r = AgiReply.parse(b"511 Command Not Permitted on a dead channel or intercept routine\n")
    assert r == AgiReply.dead_channel()
    block = (b"520-Invalid command syntax.  Proper usage follows:\n"
             b" Usage: SET VARIABLE <variablename> <value>\n"
             b"   Sets a variable to the current channel.\n"
             b"520 End of proper usage.\n")
    r = AgiReply.parse(block)
    assert r.code == 520 and r.usage is not None and len(r.usage) == 2
    assert bytes(r) == block
    assert AgiReply.parse(b"520 Invalid command syntax.  Proper usage not available.\n").usage \
        is None


@pytest.mark.parametrize(
    "raw",
    [b"200\n", b"200 result 1\n", b"200 result= 1\n", b"200 result=\n", b"\n", b"HANGUP\n",
     b"some random reply\n", b"200 result=1 (unterminated\n", b"200 result=1x\n",
     b"780 result=0\n", b"200 result=1", b"520-x\n521 End\n", b"200 result=1 (a) ,bad\n"],
)
def test_reply_garbage_is_rejected(raw: bytes) -> None:
    with pytest.raises(AgiProtocolError):
        AgiReply.parse(raw)


def test_stream_framer_env_replies_hangup_and_usage_in_any_chunking() -> None:
    stream = (asterisk_env("route") + b"200 result=1\nHANGUP\n"
              + b"520-Invalid command syntax.  Proper usage follows:\nUsage: x\n"
              + b"520 End of proper usage.\n511 Command Not Permitted on a dead channel or "
              + b"intercept routine\n")
    whole = AgiStreamFramer().feed(stream)
    assert [type(i).__name__ for i in whole] == [
        "AgiEnvironment", "AgiReply", "AgiHangup", "AgiReply", "AgiReply"]
    framer = AgiStreamFramer()
    bytewise = [item for b in stream for item in framer.feed(bytes([b]))]
    assert bytewise == whole and framer.errors == 0


def test_stream_framer_counts_garbage_and_goes_on() -> None:
    framer = AgiStreamFramer()
    items = framer.feed(asterisk_env("route") + b"garbage\n200 result=1\n")
    assert framer.errors == 1 and "not an AGI reply" in framer.last_error
    assert isinstance(items[-1], AgiReply)
    bad = AgiStreamFramer()
    assert bad.feed(b"not an env\n\n200 result=1\n") == []
    assert bad.broken and bad.errors == 1
    assert bad.feed(b"agi_channel: x\n\n") == []  # a broken stream stays broken


def test_stream_framer_bounds_memory() -> None:
    framer = AgiStreamFramer(max_env_bytes=1000)
    framer.feed(b"agi_x: " + b"a" * 2000)
    assert framer.broken
    framer = AgiStreamFramer()
    framer.feed(asterisk_env("route"))
    framer.feed(b"2" * 10_000)
    assert framer.errors == 1 and "no newline" in framer.last_error


def test_command_framer_reports_unknown_commands() -> None:
    framer = AgiCommandFramer()
    out = framer.feed(b"SET VARIABLE A 1\nBOGUS\nNOO")
    assert out[0] == AgiCommand.set_variable("A", "1")
    assert isinstance(out[1], AgiProtocolError)
    assert framer.feed(b"P\n") == [AgiCommand.noop()]


# --- Hypothesis --------------------------------------------------------------------------------

_line_text = st.text(
    alphabet=st.characters(blacklist_characters="\n\x00", blacklist_categories=("Cs",)),
    max_size=40)


@given(st.binary(max_size=400))
def test_parsers_raise_only_protocol_errors(raw: bytes) -> None:
    for parse in (AgiEnvironment.parse, AgiReply.parse, AgiCommand.parse):
        try:
            parse(raw)
        except AgiProtocolError:
            pass


@given(st.binary(max_size=300))
def test_request_parse_raises_only_protocol_errors(raw: bytes) -> None:
    try:
        AgiRequest.parse_script(raw.decode("utf-8", "surrogateescape"))
    except AgiProtocolError:
        pass


@given(st.lists(st.binary(max_size=60), max_size=12))
def test_framers_never_raise(chunks: list[bytes]) -> None:
    framer = AgiStreamFramer()
    cmds = AgiCommandFramer()
    for chunk in [asterisk_env("route"), *chunks]:
        for item in framer.feed(chunk):
            assert isinstance(item, AgiEnvironment | AgiReply | AgiHangup)
        cmds.feed(chunk)


@given(st.lists(_line_text.filter(lambda s: "\r" not in s), max_size=6))
def test_quoted_args_survive_asterisk_parse_args(args: list[str]) -> None:
    line = " ".join(quote_arg(a) for a in args)
    assert split_args(line) == args


@given(st.lists(st.tuples(st.from_regex(r"agi_[a-z0-9_]{1,12}", fullmatch=True), _line_text),
                min_size=1, max_size=8, unique_by=lambda kv: kv[0]))
def test_environment_round_trip(pairs: list[tuple[str, str]]) -> None:
    env = AgiEnvironment(tuple(pairs))
    assert AgiEnvironment.parse(bytes(env)) == env


@given(st.integers(-1, 10**6),
       st.one_of(st.none(), _line_text.filter(lambda s: "\r" not in s)),
       st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True),
                       st.from_regex(r"[0-9a-z]{0,6}", fullmatch=True), max_size=3))
def test_success_reply_round_trip(result: int, data: str | None, attrs: dict[str, str]) -> None:
    reply = AgiReply.success(result, data, **attrs)
    again = AgiReply.parse(bytes(reply))
    assert again == reply
    assert (again.result, again.data, dict(again.attributes)) == (result, data, attrs)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_stream_framer_is_chunking_invariant(data: st.DataObject) -> None:
    stream = (asterisk_env("tag?campaign=a", args=("b",)) + b"200 result=1 (x) endpos=3\n"
              + b"HANGUP\n520-u\nline\n520 End of proper usage.\n510 Invalid or unknown command\n")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    framer = AgiStreamFramer()
    out = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        out += framer.feed(stream[prev:cut])
        prev = cut
    assert out == AgiStreamFramer().feed(stream)


# --------------------------------------------------------------------------------------------
# Server end to end, with a fake Asterisk speaking the protocol over TCP
# --------------------------------------------------------------------------------------------


class FakeAsterisk:
    """The Asterisk side of one FastAGI connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.variables: dict[str, str] = {}

    @classmethod
    async def connect(cls, port: int) -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self) -> AgiCommand | None:
        line = await asyncio.wait_for(self.reader.readline(), 5)
        if not line:
            return None
        return AgiCommand.parse(line)

    async def serve(self) -> list[AgiCommand]:
        """Answer every command as Asterisk would until the server closes the connection."""
        seen = []
        while (cmd := await self.command()) is not None:
            seen.append(cmd)
            if cmd.name == ("SET", "VARIABLE") and len(cmd.args) == 2:
                self.variables[cmd.args[0]] = cmd.args[1]
                await self.send(b"200 result=1\n")
            elif cmd.name == ("GET", "VARIABLE"):
                value = self.variables.get(cmd.args[0])
                await self.send(b"200 result=0\n" if value is None
                                else bytes(AgiReply.success(1, value)))
            else:
                await self.send(b"200 result=0\n")
        return seen

    async def closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def _settings() -> AgiSettings:
    return AgiSettings(
        host="127.0.0.1", port=0, default_route="general",
        routes=[
            RouteRule(route="vip", direction="inbound", callerid_prefix="555", queue="q-vip"),
            RouteRule(route="spring", campaign="spring", trunk="trunk-cn"),
            RouteRule(route="support", direction="inbound", exten_prefix="8"),
        ],
    )


@pytest.fixture
async def tagged() -> list[tuple[str, str, dict[str, str]]]:
    return []


@pytest.fixture
async def server(tagged: list[tuple[str, str, dict[str, str]]]):  # type: ignore[no-untyped-def]
    def on_tag(uniqueid: str, channel: str, tags: dict[str, str]) -> None:
        if tags.get("customer") == "explode":
            raise RuntimeError("registry refused")
        tagged.append((uniqueid, channel, tags))

    handlers = make_handlers(_settings(), on_tag)

    async def echo(session: AgiSession) -> None:
        value = await session.get_variable("DIALSTATUS")
        await session.set_variable("ECHO", value or "none")
        await session.set_variable("HUNG", "1" if session.hung_up else "0")

    async def wait_hangup(session: AgiSession) -> None:
        while True:
            await session.execute(AgiCommand.noop())
            await asyncio.sleep(0.01)

    handlers["echo"] = echo
    handlers["loop"] = wait_hangup
    async with FastAgiServer(handlers, host="127.0.0.1", port=0, reply_timeout_s=2.0,
                             handler_timeout_s=5.0, env_timeout_s=1.0) as srv:
        yield srv


@pytest.mark.parametrize(
    ("script", "callerid", "exten", "expected"),
    [
        ("route?direction=inbound", "5551234", "100", {"EARPIECE_ROUTE": "vip",
                                                       "EARPIECE_QUEUE": "q-vip"}),
        ("route?direction=outbound&campaign=spring", "5551234", "agent",
         {"EARPIECE_ROUTE": "spring", "EARPIECE_TRUNK": "trunk-cn"}),
        ("route?direction=inbound", "4440000", "8001", {"EARPIECE_ROUTE": "support"}),
        ("route", "4440000", "8001", {"EARPIECE_ROUTE": "general"}),  # direction unknown
    ],
)
async def test_route_sets_channel_variables(server: FastAgiServer, script: str, callerid: str,
                                            exten: str, expected: dict[str, str]) -> None:
    pbx = await FakeAsterisk.connect(server.port)
    await pbx.send(asterisk_env(script, callerid=callerid, exten=exten))
    seen = await pbx.serve()
    assert pbx.variables == expected
    assert all(c.name == ("SET", "VARIABLE") for c in seen)
    await pbx.close()
    assert server.stats.completed == 1 and server.stats.malformed == 0


async def test_tag_hands_tags_to_callback(server: FastAgiServer,
                                          tagged: list[tuple[str, str, dict[str, str]]]) -> None:
    pbx = await FakeAsterisk.connect(server.port)
    await pbx.send(asterisk_env("tag?campaign=spring&customer=42&agent=", args=("agent=1001",),
                                uniqueid="1763912345.50", channel="PJSIP/cust1-0000000a"))
    await pbx.serve()
    assert tagged == [("1763912345.50", "PJSIP/cust1-0000000a",
                       {"campaign": "spring", "customer": "42", "agent": "1001"})]
    assert pbx.variables == {"EARPIECE_TAGGED": "1"}
    await pbx.close()


async def test_tag_positional_args_and_failing_callback(
        server: FastAgiServer, tagged: list[tuple[str, str, dict[str, str]]]) -> None:
    pbx = await FakeAsterisk.connect(server.port)
    await pbx.send(asterisk_env("tag", args=("autumn", "77", "2002")))
    await pbx.serve()
    assert tagged[-1][2] == {"campaign": "autumn", "customer": "77", "agent": "2002"}
    await pbx.close()
    pbx = await FakeAsterisk.connect(server.port)
    await pbx.send(asterisk_env("tag?customer=explode"))
    await pbx.serve()
    assert pbx.variables == {"EARPIECE_TAGGED": "0"}
    await pbx.close()


async def test_get_variable_and_env_sent_byte_by_byte(server: FastAgiServer) -> None:
    pbx = await FakeAsterisk.connect(server.port)
    pbx.variables["DIALSTATUS"] = "ANSWER (really)"
    for b in asterisk_env("echo"):
        await pbx.send(bytes([b]))
    await pbx.serve()
    assert pbx.variables["ECHO"] == "ANSWER (really)"
    assert pbx.variables["HUNG"] == "0"
    await pbx.close()


async def test_hangup_mid_session_is_not_taken_as_a_reply(server: FastAgiServer) -> None:
    pbx = await FakeAsterisk.connect(server.port)
    await pbx.send(asterisk_env("echo"))
    cmd = await pbx.command()
    assert cmd == AgiCommand.get_variable("DIALSTATUS")
    # The caller hangs up: Asterisk writes HANGUP on its own, then answers the command.
    await pbx.send(b"HANGUP\n200 result=1 (BUSY)\n")
    assert await pbx.command() == AgiCommand.set_variable("ECHO", "BUSY")
    await pbx.send(b"200 result=1\n")
    assert await pbx.command() == AgiCommand.set_variable("HUNG", "1")
    await pbx.send(b"511 Command Not Permitted on a dead channel or intercept routine\n")
    assert await pbx.closed_by_server()
    await pbx.close()
    await asyncio.sleep(0.05)
    assert server.stats.hangups == 1
    assert server.stats.handler_errors == 1  # the 511 made set_variable raise AgiCommandError


async def test_asterisk_closing_mid_dialogue_ends_the_handler(server: FastAgiServer) -> None:
    pbx = await FakeAsterisk.connect(server.port)
    await pbx.send(asterisk_env("loop"))
    assert await pbx.command() == AgiCommand.noop()
    await pbx.send(b"200 result=0\nHANGUP\n")
    assert await pbx.command() == AgiCommand.noop()
    await pbx.close()
    for _ in range(100):
        if server.stats.active == 0:
            break
        await asyncio.sleep(0.02)
    assert server.stats.active == 0
    assert server.stats.handler_errors == 0 and server.stats.malformed == 0


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\n", b"agi_channel: x\nagi_channel: y\n\n",
     b"\xff\xfe\x00garbage\n\n", b"agi_network: yes\n\n"],
)
async def test_garbage_environment_is_counted_and_closed(server: FastAgiServer,
                                                         garbage: bytes) -> None:
    pbx = await FakeAsterisk.connect(server.port)
    await pbx.send(garbage)
    assert await pbx.closed_by_server()
    await pbx.close()
    assert server.stats.malformed == 1
    # The server still works.
    pbx = await FakeAsterisk.connect(server.port)
    await pbx.send(asterisk_env("route"))
    await pbx.serve()
    assert pbx.variables == {"EARPIECE_ROUTE": "general"}
    await pbx.close()


async def test_garbage_reply_closes_that_connection(server: FastAgiServer) -> None:
    pbx = await FakeAsterisk.connect(server.port)
    await pbx.send(asterisk_env("route"))
    assert await pbx.command() is not None
    await pbx.send(b"this is not an AGI reply\n")
    assert await pbx.closed_by_server()
    await pbx.close()
    await asyncio.sleep(0.05)
    assert server.stats.malformed == 1 and server.stats.completed == 0


async def test_garbage_right_behind_the_environment(server: FastAgiServer) -> None:
    pbx = await FakeAsterisk.connect(server.port)
    await pbx.send(asterisk_env("route") + b"not a reply\n")
    assert await pbx.closed_by_server()
    await pbx.close()
    assert server.stats.malformed == 1 and server.stats.completed == 0


async def test_unsolicited_reply_closes_that_connection(server: FastAgiServer) -> None:
    pbx = await FakeAsterisk.connect(server.port)
    await pbx.send(asterisk_env("route"))
    assert await pbx.command() is not None
    await pbx.send(b"200 result=1\n200 result=1\n")
    assert await pbx.closed_by_server()
    await pbx.close()
    await asyncio.sleep(0.05)
    assert server.stats.malformed == 1


async def test_unknown_script_and_silent_client(server: FastAgiServer,
                                                caplog: pytest.LogCaptureFixture) -> None:
    pbx = await FakeAsterisk.connect(server.port)
    with caplog.at_level(logging.WARNING):
        await pbx.send(asterisk_env("nosuch?x=1"))
        assert await pbx.closed_by_server()
    assert server.stats.unknown_script == 1
    assert "unknown script 'nosuch'" in caplog.text
    await pbx.close()
    silent = await FakeAsterisk.connect(server.port)
    await silent.send(b"agi_network: yes\n")  # never finishes the environment
    assert await silent.closed_by_server()  # env_timeout_s = 1
    await silent.close()
    assert server.stats.malformed == 1


async def test_510_reply_reaches_the_handler() -> None:
    replies: list[AgiReply] = []

    async def probe(session: AgiSession) -> None:
        replies.append(await session.execute(AgiCommand(("FROB",), ("x",))))

    async with FastAgiServer({"probe": probe}, port=0) as srv:
        pbx = await FakeAsterisk.connect(srv.port)
        await pbx.send(asterisk_env("probe"))
        line = await pbx.reader.readline()
        assert line == b"FROB x\n"
        await pbx.send(b"510 Invalid or unknown command\n")
        assert await pbx.closed_by_server()
        await pbx.close()
    assert [r.code for r in replies] == [510]


async def test_handler_sees_closed_connection_error() -> None:
    errors: list[BaseException] = []

    async def slow(session: AgiSession) -> None:
        try:
            await session.execute(AgiCommand.noop())
        except AgiConnectionClosed as exc:
            errors.append(exc)
            raise

    async with FastAgiServer({"slow": slow}, port=0) as srv:
        pbx = await FakeAsterisk.connect(srv.port)
        await pbx.send(asterisk_env("slow"))
        assert await pbx.command() == AgiCommand.noop()
        await pbx.close()
        for _ in range(100):
            if errors:
                break
            await asyncio.sleep(0.02)
    assert errors and isinstance(errors[0], AgiConnectionClosed)


async def test_many_concurrent_connections(server: FastAgiServer) -> None:
    async def one(i: int) -> dict[str, str]:
        pbx = await FakeAsterisk.connect(server.port)
        await pbx.send(asterisk_env("route?direction=inbound", callerid=f"555{i:04d}",
                                    uniqueid=f"1763912345.{i}"))
        await pbx.serve()
        await pbx.close()
        return pbx.variables

    results = await asyncio.gather(*(one(i) for i in range(30)))
    assert all(r["EARPIECE_ROUTE"] == "vip" for r in results)
    assert server.stats.completed == 30


async def test_rule_resolver_validation_and_default() -> None:
    with pytest.raises(ValueError, match=r"routes\[0\]\.direction"):
        RuleResolver(AgiSettings(routes=[RouteRule(route="x", direction="sideways")]))
    resolver = RuleResolver(_settings())
    q = RouteQuery(uniqueid="1", channel="c", direction="", exten="9", callerid="1",
                   context="from-pstn")
    assert await resolver.resolve(q) == RouteDecision("general", source="agi.default_route")


async def test_crm_resolver_first_then_rules() -> None:
    class Crm:
        def __init__(self, answer: RouteDecision | None, fail: bool = False) -> None:
            self.answer = answer
            self.fail = fail

        async def resolve(self, query: RouteQuery) -> RouteDecision | None:
            if self.fail:
                raise ConnectionError("crm down")
            return self.answer

    for resolvers, expected in [
        ([Crm(RouteDecision("crm-route", queue="q1", source="crm"))], "crm-route"),
        ([Crm(None)], "general"),
        ([Crm(None, fail=True), Crm(RouteDecision("second"))], "second"),
    ]:
        handlers = make_handlers(_settings(), lambda u, c, t: None, resolvers)
        async with FastAgiServer(handlers, port=0) as srv:
            pbx = await FakeAsterisk.connect(srv.port)
            await pbx.send(asterisk_env("route"))
            await pbx.serve()
            await pbx.close()
        assert pbx.variables["EARPIECE_ROUTE"] == expected
