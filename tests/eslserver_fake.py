"""A small fake FreeSWITCH inbound event socket that answers with captured frames.

Every byte it sends comes from ../shared/freeswitch/captures/esl: replies are looked up by the
exact command line in the captured sessions (later sessions named in ``overlay`` win), and
``bgapi`` replies and BACKGROUND_JOB events are the captured ones with the Job-UUID (and the
job's command) put in. Tests push captured event frames with :meth:`FakeEslServer.push`.
"""

from __future__ import annotations

import asyncio
import contextlib

from esl_captures import load

from earpiece.freeswitch.esl_event import EslEvent
from earpiece.freeswitch.esl_message import EslCommand, EslFramer, EslMessage


def reply_map(*names: str) -> dict[str, list[bytes]]:
    """Command line -> the frames FreeSWITCH sent before the client's next command."""
    out: dict[str, list[bytes]] = {}
    for name in names:
        current: list[bytes] | None = None
        for rec in load(name):
            if rec.eof:
                continue
            if rec.dir == "out":
                current = []
                out[EslCommand.parse(rec.raw).command] = current
            elif current is not None:
                current.append(rec.raw)
    return out


def _first(name: str, needle: bytes) -> bytes:
    return next(r.raw for r in load(name) if r.dir == "in" and needle in r.raw)


BASE = reply_map("api_commands", "event_subscriptions", "auth_ok")
AUTH_REQUEST = _first("auth_ok", b"auth/request")
ACCEPTED = _first("auth_ok", b"+OK accepted")
BYE = BASE["exit"]
REJECTED = reply_map("auth_bad")["auth wrong-password"]
UNKNOWN = BASE["api no_such_command"]
BGAPI_REPLY = _first("api_commands", b"Reply-Text: +OK Job-UUID")
JOB_EVENT = _first("originate_answer", b"BACKGROUND_JOB")


def job_frames(job_uuid: str, command: str, body: str) -> tuple[bytes, bytes]:
    """The captured bgapi reply and BACKGROUND_JOB event, for this Job-UUID and command."""
    reply = EslMessage.parse(BGAPI_REPLY)
    reply = EslMessage(tuple(
        (k, f"+OK Job-UUID: {job_uuid}" if k == "Reply-Text" else job_uuid if k == "Job-UUID"
         else v) for k, v in reply.headers
    ))
    verb, _, arg = command.partition(" ")
    template = EslEvent.from_message(EslMessage.parse(JOB_EVENT))
    pairs: list[tuple[str, str]] = []
    for k, v in template.headers:
        if k == "Job-UUID":
            v = job_uuid
        elif k == "Job-Command":
            v = verb
        elif k == "Job-Command-Arg":
            if not arg:
                continue  # README: absent when there was no argument
            v = arg
        pairs.append((k, v))
    return bytes(reply), bytes(EslEvent.build(pairs, body).to_message())


class FakeEslServer:
    def __init__(self, *, password: str = "ClueCon", overlay: tuple[str, ...] = ()) -> None:
        self.password = password
        self.replies = dict(BASE)
        for name in overlay:
            self.replies.update(reply_map(name))
        self.jobs: dict[str, str] = {}  # bgapi command -> BACKGROUND_JOB body
        self.hold_jobs = False
        self.silent_for: set[str] = set()  # commands never answered (keepalive tests)
        self.received: list[EslCommand] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self.held: list[tuple[str, bytes]] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def close(self) -> None:
        await self.stop_listening()
        self.drop()
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def drop(self) -> None:
        for w in self.writers:
            w.close()
        self.writers.clear()

    def push(self, frames: list[bytes]) -> None:
        for w in self.writers:
            w.write(b"".join(frames))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.append(task)
        self.writers.append(writer)
        writer.write(AUTH_REQUEST)
        framer = EslFramer(commands=True)
        authed = False
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                for cmd in framer.feed(data):
                    assert isinstance(cmd, EslCommand)
                    self.received.append(cmd)
                    if not authed:
                        if cmd.command == f"auth {self.password}":
                            authed = True
                            writer.write(ACCEPTED)
                        else:
                            writer.write(b"".join(REJECTED))
                            writer.close()
                            return
                        continue
                    if cmd.command in self.silent_for:
                        continue
                    writer.write(self._answer(cmd))
                    if cmd.command == "exit":
                        writer.close()
                        return
        if writer in self.writers:
            self.writers.remove(writer)

    def _answer(self, cmd: EslCommand) -> bytes:
        if cmd.verb == "event":
            fmt = cmd.argument.partition(" ")[0]
            return bytes(EslMessage.build([
                ("Content-Type", "command/reply"),
                ("Reply-Text", f"+OK event listener enabled {fmt}"),
            ]))
        if cmd.verb == "bgapi":
            body = self.jobs.get(cmd.argument, "-ERR no_such_command Command not found!\n")
            reply, event = job_frames(cmd["Job-UUID"], cmd.argument, body)
            if self.hold_jobs:
                self.held.append((cmd["Job-UUID"], event))
                return reply
            return reply + event
        if cmd.command in self.replies:
            return b"".join(self.replies[cmd.command])
        if cmd.verb == "api":
            return b"".join(UNKNOWN)
        return bytes(EslMessage.build([("Content-Type", "command/reply"), ("Reply-Text", "+OK")]))
