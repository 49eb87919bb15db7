"""Call history for the dashboard, read from the CRM store (:class:`~earpiece.crm.base.CrmBackend`).

:func:`search` lists calls (newest first) by outcome and start time, each with the endpoints of
its agent legs, the customer's last emotion state and its QC flag count; :func:`call_page` is
one call with its transcript, scored utterances, prompts and QC flags. Roles are applied by the
caller with :meth:`earpiece.web.auth.Session.may_see` on ``agents``.
"""

from __future__ import annotations

import json
from typing import Any

from earpiece.delivery.phone import endpoint_of
from earpiece.web.auth import Session

MAX_ROWS = 500


async def _agents(store: Any, ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {i: [] for i in ids}
    if not ids:
        return out
    marks = ",".join("?" for _ in ids)
    rows = await store.query(
        f"SELECT call_id, channel FROM legs WHERE role = 'agent' AND call_id IN ({marks})"
        " ORDER BY joined", tuple(ids))
    for row in rows:
        endpoint = endpoint_of(row["channel"])
        if endpoint and endpoint not in out[row["call_id"]]:
            out[row["call_id"]].append(endpoint)
    return out


async def search(store: Any, session: Session, *, outcome: str = "", since: float | None = None,
                 until: float | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Calls ``session`` may see, newest first, filtered by outcome and start time."""
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if outcome:
        where.append("COALESCE(c.outcome, c.state) = ?")
        params.append(outcome)
    if since is not None:
        where.append("c.started >= ?")
        params.append(since)
    if until is not None:
        where.append("c.started < ?")
        params.append(until)
    limit = max(1, min(limit, MAX_ROWS))
    # an agent's calls are a few among many: read more rows than shown, then filter by role
    fetch = limit if session.role == "supervisor" else MAX_ROWS * 4
    rows = await store.query(
        "SELECT c.id, c.direction, c.channel, c.state, c.outcome, c.hangup_cause, c.tags,"
        " c.started, c.answered, c.ended, c.end_reason FROM calls c"
        f" WHERE {' AND '.join(where)} ORDER BY c.started DESC, c.id LIMIT ?",
        (*params, fetch))
    agents = await _agents(store, [r["id"] for r in rows])
    out = []
    for row in rows:
        row["agents"] = agents.get(row["id"], [])
        if not session.may_see(set(row["agents"])):
            continue
        row["tags"] = json.loads(row["tags"]) if isinstance(row["tags"], str) else row["tags"]
        out.append(row)
        if len(out) >= limit:
            break
    await _summaries(store, out)
    return out


async def _summaries(store: Any, calls: list[dict[str, Any]]) -> None:
    ids = [c["id"] for c in calls]
    if not ids:
        return
    marks = ",".join("?" for _ in ids)
    emotion = await store.query(
        "SELECT call_id, state, emotion_index FROM emotion_calls WHERE party = 'customer'"
        f" AND call_id IN ({marks})", tuple(ids))
    flags = await store.query(
        f"SELECT call_id, COUNT(*) AS n FROM qc_flags WHERE call_id IN ({marks})"
        " GROUP BY call_id", tuple(ids))
    by_emotion = {r["call_id"]: {"state": r["state"], "index": r["emotion_index"]}
                  for r in emotion}
    by_flags = {r["call_id"]: int(r["n"]) for r in flags}
    for call in calls:
        call["emotion"] = by_emotion.get(call["id"])
        call["qc_flags"] = by_flags.get(call["id"], 0)


async def call_agents(store: Any, call_id: str) -> list[str] | None:
    """The agent endpoints of a stored call; None when the CRM does not have it."""
    rows = await store.query("SELECT id FROM calls WHERE id = ?", (call_id,))
    if not rows:
        return None
    return (await _agents(store, [call_id]))[call_id]


async def call_page(store: Any, call_id: str) -> dict[str, Any] | None:
    """One stored call with its transcript, emotion, prompts and QC flags (None: unknown)."""
    rows = await store.query(
        "SELECT id, direction, channel, state, outcome, outcome_source, hangup_cause, tags,"
        " started, answered, ended, end_reason FROM calls WHERE id = ?", (call_id,))
    if not rows:
        return None
    call: dict[str, Any] = rows[0]
    call["tags"] = json.loads(call["tags"]) if isinstance(call["tags"], str) else call["tags"]
    call["agents"] = (await _agents(store, [call_id]))[call_id]
    call["transcript"] = await store.query(
        "SELECT party, start_s, end_s, text, language, at FROM utterances WHERE call_id = ?"
        " ORDER BY start_s, at", (call_id,))
    call["emotions"] = await store.query(
        "SELECT party, label, valence, arousal, confidence, emotion_index AS \"index\", start_s,"
        " end_s, text, at FROM emotion_utterances WHERE call_id = ? ORDER BY at", (call_id,))
    prompts = await store.query(
        "SELECT id AS prompt_id, at, kind, text, slot, product, rule, reason, delivery"
        " FROM prompts WHERE call_id = ? ORDER BY at", (call_id,))
    for prompt in prompts:
        for key in ("reason", "delivery"):
            if isinstance(prompt[key], str):
                prompt[key] = json.loads(prompt[key])
    call["prompts"] = prompts
    call["qc"] = await store.query(
        "SELECT kind, rule, party, matched, text, at FROM qc_flags WHERE call_id = ?"
        " ORDER BY at", (call_id,))
    cpa = await store.query(
        "SELECT label, confidence, decision_s FROM cpa_verdicts WHERE call_id = ? ORDER BY at",
        (call_id,))
    call["cpa"] = cpa[-1] if cpa else None
    return call
