"""The dashboard in a real browser (issue #17): Debian's chromium driven by Playwright, headless,
against the service attached to the PBX simulator (two live calls, agent1 and agent2).

Speech recognition and the emotion stage are off (they would need seconds of CPU per call);
their events are published on the bus as scripted Transcript / EmotionScored / EmotionChanged /
QcFlag events, and the strategy stage turns the customer's turn to negative into a real
PromptReady. The agent sees their call with its transcript, emotion badges and chart, the
prompt and the QC flag, and gets 403 for the other agent's call; the supervisor sees both calls
with their alerts and opens one. Screenshots go to docs/img/; the delay from an event on the
bus to the page showing it is measured and printed (docs/benchmarks.md), not asserted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from earpiece.app import Service
from earpiece.asr.settings import AsrSettings
from earpiece.config import DashboardUser
from earpiece.demo import demo_settings
from earpiece.events import (
    ChannelJoined,
    ChannelRole,
    EmotionChanged,
    EmotionScored,
    QcFlag,
    Transcript,
)
from earpiece.sim.scenario import load_scenario
from earpiece.sim.simulator import Simulator
from earpiece.strategy.settings import StrategySettings
from earpiece.web.auth import hash_password

playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian chromium not installed (make venv)")
REPO = Path(__file__).resolve().parent.parent
IMG = REPO / "docs" / "img"
CAMPAIGN = REPO / "config" / "campaigns" / "example.toml"
PASSWORDS = {"ann": "ann-password", "ben": "ben-password", "sue": "sue-password"}


def scenario_file(tmp_path: Path) -> Path:
    lines = [
        'name = "dashboard-browser"',
        "[dialplan]", 'agents = ["agent1", "agent2"]', "dial_timeout_s = 10",
        "[[endpoints]]", 'name = "agent1"', 'role = "agent"',
        "[[endpoints]]", 'name = "agent2"', 'role = "agent"',
        "[[endpoints]]", 'name = "cust1"', 'outcome = "answer"', "ring_s = 0.3",
        "hangup_after_s = 60.0",
        "[[endpoints]]", 'name = "cust2"', 'outcome = "answer"', "ring_s = 0.3",
        "hangup_after_s = 60.0",
        "[dialer]", "enabled = true", "start_after_s = 0.3", "spacing_s = 0.3",
        "timeout_ms = 5000", 'calls = ["cust1", "cust2"]',
    ]
    path = tmp_path / "dashboard.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling state owned by other components
            await asyncio.sleep(0.02)


def users() -> list[DashboardUser]:
    return [
        DashboardUser(name="ann", role="agent", endpoint="agent1",
                      password_hash=hash_password(PASSWORDS["ann"], iterations=1000)),
        DashboardUser(name="ben", role="agent", endpoint="agent2",
                      password_hash=hash_password(PASSWORDS["ben"], iterations=1000)),
        DashboardUser(name="sue", role="supervisor",
                      password_hash=hash_password(PASSWORDS["sue"], iterations=1000)),
    ]


SCRIPT = [  # (party, text, emotion label, valence, index)
    ("agent", "Good morning, this is Ann from Earpiece Energy.", None, 0.0, 0.0),
    ("customer", "Hi. I have been waiting for a refund for three weeks.", "neutral", -0.1, -0.1),
    ("agent", "I am sorry to hear that, let me check your account.", None, 0.0, 0.0),
    ("customer", "This is the third time I call, it is really annoying.", "negative", -0.6,
     -0.4),
    ("customer", "Nobody ever calls back, I am very unhappy.", "negative", -0.8, -0.6),
]


async def login(page: Any, base: str, user: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill("input[name=user]", user)
    await page.fill("input[name=password]", PASSWORDS[user])
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/live")


async def test_dashboard_in_chromium(tmp_path: Path) -> None:
    sim = Simulator(load_scenario(scenario_file(tmp_path)), seed=5)
    await sim.start()
    base_settings = demo_settings(sim, db=str(tmp_path / "crm.sqlite3"))
    settings = dataclasses.replace(
        base_settings, asr=AsrSettings(enabled=False),
        strategy=StrategySettings(campaign=CAMPAIGN, min_gap_s=0.0),
        http=dataclasses.replace(base_settings.http, users=users()))
    service = Service(settings, media=False)
    agent_of: dict[str, str] = {}
    service.bus.subscribe(ChannelJoined, lambda ev: agent_of.__setitem__(
        ev.channel.split("/")[1].rsplit("-", 1)[0], ev.call_id)
        if ev.role == ChannelRole.AGENT else None)
    IMG.mkdir(parents=True, exist_ok=True)
    try:
        await service.start()
        assert service.ops is not None
        await wait_until(lambda: {"agent1", "agent2"} <= set(agent_of), 15.0)
        await wait_until(lambda: sum(c["state"] == "answered" and not c["ended"]
                                     for c in service.registry.snapshot()) >= 2, 10.0)
        call1, call2 = agent_of["agent1"], agent_of["agent2"]
        base = f"http://127.0.0.1:{service.ops.port}"
        async with playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                await agent_and_supervisor(service, browser, base, call1, call2)
            finally:
                await browser.close()
    finally:
        await service.stop()
        await sim.stop()


async def agent_and_supervisor(service: Service, browser: Any, base: str, call1: str,
                               call2: str) -> None:
    bus = service.bus
    agent = await browser.new_page(viewport={"width": 1100, "height": 820})
    await login(agent, base, "ann")
    await agent.wait_for_selector(f'.call[data-call-id="{call1}"]')

    # both parties' transcripts, the customer's emotion per utterance; the turn to negative
    # makes the strategy stage raise a soothe prompt
    t = 1.0
    for n, (party, text, label, valence, index) in enumerate(SCRIPT):
        bus.publish(Transcript(call_id=call1, party=party, text=text[: len(text) // 2],
                               final=False, start_s=t, end_s=t + 1, language="en"))
        bus.publish(Transcript(call_id=call1, party=party, text=text, final=True, start_s=t,
                               end_s=t + 2, language="en"))
        if label is not None:
            state = "negative" if index <= -0.3 else "neutral"
            bus.publish(EmotionScored(call_id=call1, party="customer", label=label,
                                      valence=valence, arousal=0.2, confidence=0.8,
                                      start_s=t, end_s=t + 2, text=text, index=index,
                                      state=state))
            if n == 3:
                bus.publish(EmotionChanged(call_id=call1, party="customer", old="neutral",
                                           new="negative", index=index, utterance=2))
        t += 3
    bus.publish(QcFlag(call_id=call1, kind="forbidden", rule="no_guarantees", language="en",
                       campaign="example", party="agent", matched="guaranteed",
                       text="your refund is guaranteed"))
    await agent.wait_for_function(
        "() => document.querySelectorAll('[data-testid=line]').length === 5")
    lines = await agent.locator("[data-testid=line] .text").all_inner_texts()
    assert lines == [s[1] for s in SCRIPT]  # partials replaced by their finals
    assert await agent.locator("[data-testid=line] .badge.emo-negative").count() == 2
    await agent.wait_for_selector("svg.emotion-chart circle.pt-customer")
    assert await agent.locator("svg.emotion-chart circle.pt-customer").count() == 3
    prompt = agent.locator("[data-testid=prompt]")
    await agent.wait_for_function(
        "() => (document.querySelector('[data-testid=prompt]') || {}).textContent"
        "?.includes('Acknowledge the problem')", timeout=5000)
    assert "Acknowledge the problem" in await prompt.inner_text()
    assert "negative_soothe" in await prompt.inner_text()
    assert "no_guarantees" in await agent.locator("[data-testid=qc]").inner_text()
    assert "answered" in await agent.locator("[data-testid=call-state]").inner_text()
    await agent.screenshot(path=str(IMG / "dashboard-agent.png"), full_page=True)

    delays = await measure_delays(bus, agent, call1)
    print(f"\nbus event -> page update: n={len(delays)} median {statistics.median(delays):.1f}"
          f" ms, p95 {sorted(delays)[int(0.95 * (len(delays) - 1))]:.1f} ms, max"
          f" {max(delays):.1f} ms")

    # the other agent's call: 403 for the page and for its data
    resp = await agent.goto(f"{base}/live/{call2}")
    assert resp is not None and resp.status == 403
    resp = await agent.goto(f"{base}/api/dash/live/{call2}")
    assert resp is not None and resp.status == 403
    resp = await agent.goto(f"{base}/history/{call2}")
    assert resp is not None and resp.status == 403

    supervisor = await (await browser.new_context(
        viewport={"width": 1280, "height": 720})).new_page()
    await login(supervisor, base, "sue")
    for cid in (call1, call2):
        await supervisor.wait_for_selector(f'table.calls tr[data-call-id="{cid}"]')
    row1 = supervisor.locator(f'table.calls tr[data-call-id="{call1}"]')
    assert "agent1" in await row1.inner_text()
    assert await row1.locator(".alert-negative").count() == 1
    assert await row1.locator(".alert-qc").count() == 1
    assert "agent2" in await supervisor.locator(
        f'table.calls tr[data-call-id="{call2}"]').inner_text()
    await supervisor.screenshot(path=str(IMG / "dashboard-supervisor.png"), full_page=True)
    await row1.locator("a").click()
    await supervisor.wait_for_url(f"{base}/live/{call1}")
    await supervisor.wait_for_function(
        "() => document.querySelectorAll('[data-testid=line]').length >= 5")
    assert await supervisor.locator("svg.emotion-chart circle.pt-customer").count() == 3

    # call history from the CRM: the list and a call page with its transcript
    assert service.crm is not None
    await service.crm.flush()
    await supervisor.goto(f"{base}/history?outcome=answered")
    await supervisor.wait_for_selector(f'table.history tr[data-call-id="{call2}"]')
    await supervisor.locator(f'table.history tr[data-call-id="{call1}"] a').click()
    await supervisor.wait_for_function(
        "() => document.querySelectorAll('[data-testid=line]').length >= 5")
    await supervisor.screenshot(path=str(IMG / "dashboard-history-call.png"), full_page=True)


async def measure_delays(bus: Any, page: Any, call_id: str, n: int = 30) -> list[float]:
    """Delays (ms) from publishing an event on the bus to the page having rendered it (the
    page notes its wall clock in the first animation frame after the update)."""
    delays: list[float] = []
    for i in range(n):
        at = time.time()
        bus.publish(Transcript(call_id=call_id, party="agent", text=f"probe {i}", final=True,
                               start_s=100.0 + i, end_s=100.5 + i, language="en", at=at))
        shown = await page.wait_for_function(
            "(at) => { const u = window.__earpiece.updates.find((x) => x.at === at);"
            " return u ? u.shown : null; }", arg=at)
        delays.append((float(await shown.json_value()) - at) * 1000.0)
        await asyncio.sleep(0.05)
    return delays
