"""Earpiece's own AMI and ARI clients against the simulator: originate outcomes, resync after
an AMI/ARI restart, snoop + externalMedia through :class:`AriClient`."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from earpiece.agi.ami_actions import AmiActionError
from earpiece.agi.ami_message import AmiMessage
from earpiece.agi.settings import AmiSettings, AriSettings
from earpiece.secret import Secret
from earpiece.sim.scenario import Scenario
from earpiece.sim.simulator import Simulator

ami_client = pytest.importorskip("earpiece.agi.ami_client")
ari_client = pytest.importorskip("earpiece.agi.ari_client")

SCENARIO = Scenario.from_dict({
    "endpoints": [
        {"name": "agent1", "role": "agent", "callerid_name": "Agent One", "ring_s": 0.1,
         "says": [{"wav": "demo-echotest", "at_s": 0.05}]},
        {"name": "cust1", "callerid_name": "Customer One", "ring_s": 0.2, "hangup_after_s": 0,
         "says": [{"wav": "demo-congrats", "at_s": 0.1}]},
        {"name": "busy1", "outcome": "busy", "ring_s": 0.1},
        {"name": "cust2", "registered": False},
    ],
    "dialplan": {"agents": ["agent1"]},
})


async def until(pred: Any, within: float = 5.0) -> None:
    for _ in range(int(within / 0.02)):
        if pred():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_ami_client_originates_and_resyncs_after_restart() -> None:
    events: list[AmiMessage] = []
    connects = 0

    async def on_connected() -> None:
        nonlocal connects
        connects += 1

    async with Simulator(SCENARIO) as sim:
        client = ami_client.AmiClient(
            AmiSettings(port=sim.ami_port, secret=Secret("assist"), reconnect_initial_s=0.1,
                        reconnect_max_s=0.3),
            on_event=events.append, on_connected=on_connected)
        await client.start(timeout_s=5)
        try:
            ids = {}
            for ep in ("busy1", "cust2", "cust1"):
                ids[ep] = await client.originate(f"PJSIP/{ep}", context="dialer", exten="agent",
                                                 caller_id="Dialer <5000>", timeout_ms=5000)
            await until(lambda: sum(m.event == "OriginateResponse" for m in events) == 3)
            got = {m.action_id: (m["Response"], m["Reason"]) for m in events
                   if m.event == "OriginateResponse"}
            assert got == {ids["busy1"]: ("Failure", "0"), ids["cust2"]: ("Failure", "0"),
                           ids["cust1"]: ("Success", "4")}
            await until(lambda: any(m.event == "BridgeEnter" and m["BridgeNumChannels"] == "2"
                                    for m in events))
            await sim.restart_ami(delay_s=0.2)
            await until(lambda: connects >= 2 and client.connected)
            live = await client.core_show_channels()
            assert sorted(m["Channel"].split("-")[0] for m in live) == ["PJSIP/agent1",
                                                                        "PJSIP/cust1"]
            cust = next(m["Channel"] for m in live if m["Channel"].startswith("PJSIP/cust1"))
            await client.hangup(cust, 16)
            await until(lambda: not sim.channels())
            # The default sim user is the shipped least-privilege one: no `command` class.
            with pytest.raises(AmiActionError, match="Permission denied"):
                await client.command("core show version")
        finally:
            await client.close()


async def test_ari_client_snoop_and_external_media() -> None:
    async with Simulator(SCENARIO) as sim:
        events: list[Any] = []
        settings = AriSettings(url=sim.ari_url, password=Secret("assist"), subscribe_all=True,
                               reconnect_initial_s=0.1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        async with ari_client.AriClient(settings, on_event=events.append) as ari:
            await ari.wait_connected(5)
            from earpiece.sim.engine import OriginateRequest

            sim.originate(OriginateRequest(channel="PJSIP/cust1", context="dialer",
                                           exten="agent"))
            await until(lambda: any(type(e).__name__ == "ChannelCreated" for e in events))
            created = next(e for e in events if type(e).__name__ == "ChannelCreated")
            em = await ari.external_media(app="assist",
                                          external_host=f"127.0.0.1:{sock.getsockname()[1]}",
                                          format="ulaw")
            port = await ari.get_channel_var(em.id, "UNICASTRTP_LOCAL_PORT")
            assert em.channelvars is not None
            assert port == em.channelvars["UNICASTRTP_LOCAL_PORT"]
            snoop = await ari.snoop_channel(created.channel.id, app="assist", spy="in",
                                            app_args="customer")
            assert snoop.name.startswith(f"Snoop/{created.channel.id}-")
            assert snoop.state == "Up"
            bridge = await ari.request("POST", "/bridges", (("type", "mixing"),))
            assert isinstance(bridge, dict) and bridge["bridge_class"] == "stasis"
            bridge_id = bridge["id"]
            await until(lambda: any(type(e).__name__ == "StasisStart"
                                    and e.channel.id == em.id for e in events))
            await ari.request("POST", f"/bridges/{bridge_id}/addChannel",
                              (("channel", f"{em.id},{snoop.id}"),))
            loop = asyncio.get_running_loop()
            data, addr = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), 2)
            assert addr == ("127.0.0.1", int(port)) and len(data) == 172
            await ari.hangup_channel(created.channel.id)
            await until(lambda: not any(c.tech in ("PJSIP", "Snoop") for c in sim.channels()))
        sock.close()
