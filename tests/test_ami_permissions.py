"""The AMI permission table (earpiece.agi.ami_permissions) against Earpiece's own code, the
shipped manager.conf, Asterisk 22.10.1's captures (captures/faults/ami/ami_permissions*), and
the doctor's pure checks (earpiece.agi.ami_check)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from earpiece.agi.ami_check import READ_LINE, WRITE_LINE, EventsSeen, check_read, check_write
from earpiece.agi.ami_message import AmiMessage
from earpiece.agi.ami_permissions import (
    ACTION_CLASSES,
    CLIENT_ONLY_ACTIONS,
    EARPIECE_ACTIONS,
    EVENT_CLASSES,
    REQUIRED_READ,
    REQUIRED_WRITE,
    action_allowed,
    class_line,
    classes_of_privilege,
    event_allowed,
    parse_classes,
    parse_manager_conf,
    priv_text,
)
from earpiece.errors import ConfigError
from earpiece.sim.scenario import Scenario

REPO = Path(__file__).resolve().parents[1]
FAULTS = REPO.parent / "shared" / "asterisk" / "captures" / "faults" / "ami"
needs_faults = pytest.mark.skipif(not (FAULTS / "ami_permissions.jsonl").exists(),
                                  reason="captures/faults not available")
SITE_READ = parse_classes("system,call,agent,user,dtmf,reporting")  # the capture's user
SITE_WRITE = parse_classes("system,call,originate,reporting,message")


def _records(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FAULTS / name).read_text().splitlines() if line]


def _rx(name: str) -> list[AmiMessage]:
    return [AmiMessage.parse(r["raw"].encode()) for r in _records(name)
            if r["dir"] == "rx" and r["raw"].endswith("\r\n\r\n")]


def _list_commands(name: str) -> AmiMessage:
    return next(m for m in _rx(name) if len(m.headers) > 50)


# --- the table against Earpiece's code -------------------------------------------------------


def _actions_sent_by_earpiece() -> set[str]:
    """Every action name Earpiece builds (the simulator answers actions, it sends none)."""
    found: set[str] = set()
    for path in (REPO / "earpiece").rglob("*.py"):
        if "sim" in path.relative_to(REPO / "earpiece").parts:
            continue
        text = path.read_text()
        found.update(re.findall(r'AmiMessage\.action\(\s*"(\w+)"', text))
        found.update(re.findall(r'\("Action", "(\w+)"\)', text))
    return found


def test_every_action_earpiece_sends_is_in_the_table() -> None:
    sent = _actions_sent_by_earpiece()
    assert {"Login", "Logoff", "Ping", "ListCommands", "Originate", "Hangup",
            "CoreShowChannels", "MessageSend", "SendText", "Command"} <= sent
    assert sent == set(EARPIECE_ACTIONS) | set(CLIENT_ONLY_ACTIONS)
    for action, (cls, _who) in EARPIECE_ACTIONS.items():
        needs = ACTION_CLASSES[action]
        if needs:
            assert cls in REQUIRED_WRITE and cls in needs, action
        else:
            assert cls == "", action
        assert action_allowed(action, REQUIRED_WRITE)
    for action, cls in CLIENT_ONLY_ACTIONS.items():
        assert ACTION_CLASSES[action] == {cls}
        assert not action_allowed(action, REQUIRED_WRITE)  # not granted by the shipped user
    # and nothing is granted that no action uses
    assert {c for c, _ in EARPIECE_ACTIONS.values() if c} == REQUIRED_WRITE


def test_every_event_earpiece_handles_is_readable() -> None:
    from earpiece.agi.calls import ami_evidence

    handled = set(re.findall(r'^\s+"(\w+)": _ami_\w+,$',
                             Path(ami_evidence.__file__).read_text(), re.M))
    assert {"Newexten", "VarSet", "Newchannel", "Hangup", "OriginateResponse"} <= handled
    for event in handled:
        assert EVENT_CLASSES[event] in REQUIRED_READ, event
    assert {EVENT_CLASSES[e] for e in handled} == {"call", "dialplan"}
    assert {"system", "dtmf"} <= REQUIRED_READ  # FullyBooted/Shutdown, agent feedback keys
    assert not {"reporting", "agent", "user", "security", "cdr"} & REQUIRED_READ


def test_shipped_manager_conf_is_exactly_least_privilege() -> None:
    users = parse_manager_conf((REPO / "config" / "asterisk" / "manager.conf").read_text())
    assert set(users) == {"assist"}
    assert users["assist"].read == REQUIRED_READ
    assert users["assist"].write == REQUIRED_WRITE
    assert (READ_LINE, WRITE_LINE) == ("system,call,dtmf,dialplan",
                                       "call,reporting,originate,message")


def test_parse_helpers() -> None:
    assert parse_classes(" System, call ") == {"system", "call"}
    with pytest.raises(ValueError, match="unknown AMI class bogus"):
        parse_classes("call,bogus")
    assert class_line({"message", "call", "system"}) == "system,call,message"
    assert priv_text({"reporting", "config"}) == "config,reporting,all"
    assert priv_text(()) == "<none>"
    assert classes_of_privilege("dialplan,all") == {"dialplan"}
    assert event_allowed("call,all", {"call"}) and not event_allowed("dialplan,all", {"call"})
    assert event_allowed("dialplan,all", {"all"})
    assert action_allowed("Ping", ()) and action_allowed("hangup", {"call"})
    assert not action_allowed("Command", {"system"})
    conf = parse_manager_conf("[general]\nenabled = yes\n[a]\nread = call\nread => all\n"
                              "#include x\n[b](tpl)\nwrite = system ; comment\n")
    assert conf["a"].read == {"all"} and conf["b"].write == {"system"}
    assert "general" not in conf


# --- the table against the captures ----------------------------------------------------------


@needs_faults
def test_action_classes_are_those_of_asterisk() -> None:
    listing = _list_commands("ami_permissions_readall.jsonl")
    recorded = {k: re.search(r"\(Priv: ([^)]*)\)$", v).group(1)  # type: ignore[union-attr]
                for k, v in listing.headers if k not in ("Response", "ActionID")}
    assert {k: priv_text(v) for k, v in ACTION_CLASSES.items()} == recorded


@needs_faults
def test_listcommands_of_the_site_user_is_any_class_of_write() -> None:
    listed = {k for k, _ in _list_commands("ami_permissions.jsonl").headers[2:]}
    assert listed == {a for a in ACTION_CLASSES if action_allowed(a, SITE_WRITE)}
    assert len(listed) == 115
    # what the old shipped write= allowed and Earpiece does not need (issue #16, defect 4)
    assert {"GetConfig", "Reload", "ModuleLoad", "DBPut", "DialplanExtensionAdd"} <= listed
    assert not any(action_allowed(a, REQUIRED_WRITE)
                   for a in ("GetConfig", "Reload", "ModuleLoad", "DBPut",
                             "DialplanExtensionAdd", "Command", "UserEvent"))


@needs_faults
def test_denied_actions_agree_with_the_capture() -> None:
    records = _records("ami_permissions.jsonl")
    for i, rec in enumerate(records):
        if rec["dir"] != "tx":
            continue
        action = AmiMessage.parse(rec["raw"].encode())
        reply = AmiMessage.parse(records[i + 1]["raw"].encode())
        name = action.action_name or ""
        if name in ("Login", "Logoff"):
            continue
        denied = reply.get("Message") == "Permission denied"
        assert denied == (not action_allowed(name, SITE_WRITE)), name
        if denied:
            assert records[i + 1]["raw"] == (f"Response: Error\r\nActionID: {action.action_id}"
                                             "\r\nMessage: Permission denied\r\n\r\n")


@needs_faults
def test_events_of_the_site_user_are_those_its_read_classes_allow() -> None:
    # unsolicited events only (list answers such as Status carry an ActionID, no Privilege)
    site = [m for m in _rx("ami_permissions.jsonl") if m.event and m.get("Privilege")]
    full = [m for m in _rx("ami_permissions_readall.jsonl") if m.event and m.get("Privilege")]
    site_names = {m.event for m in site}
    full_names = {m.event for m in full}
    only_full = full_names - site_names
    assert {"Newexten", "VarSet"} <= only_full  # the dialplan class, defect 4
    for m in full:
        allowed = event_allowed(m["Privilege"], SITE_READ)
        assert allowed == (m.event in site_names), (m.event, m["Privilege"])
    # and with the shipped least-privilege read= the dialplan events arrive
    assert all(event_allowed(m["Privilege"], REQUIRED_READ) for m in full
               if m.event in ("Newexten", "VarSet", "Newchannel", "Hangup", "FullyBooted"))
    assert not any(event_allowed(m["Privilege"], REQUIRED_READ) for m in full
                   if m.event in ("RTCPSent", "RTCPReceived", "SuccessfulAuth"))


@needs_faults
def test_event_classes_are_the_recorded_privileges() -> None:
    seen: dict[str, str] = {}
    for path in sorted(FAULTS.glob("*.jsonl")):
        for m in _rx(path.name):
            if m.event and m.get("Privilege"):
                seen.setdefault(m.event, m["Privilege"])
    common = set(seen) & set(EVENT_CLASSES)
    assert {"Newexten", "VarSet", "Newchannel", "FullyBooted", "Shutdown", "RTCPReceived"} \
        <= common
    for event in common:
        assert seen[event] == f"{EVENT_CLASSES[event]},all", event


# --- the doctor's pure checks ----------------------------------------------------------------


def test_check_write_pure() -> None:
    none = check_write("assist", None)
    assert none.status == "FAIL" and "manager.conf [assist]: write = " in none.fix
    ok = check_write("assist", [("Response", "Success"), *[(a, "x") for a in EARPIECE_ACTIONS]])
    assert ok.status == "PASS"
    missing = check_write("assist", [(a, "x") for a in EARPIECE_ACTIONS if a != "MessageSend"])
    assert (missing.status, missing.detail) == ("FAIL", "user 'assist' may not run: MessageSend")
    assert "(missing: message)" in missing.fix
    extra = check_write("assist", [*[(a, "x") for a in EARPIECE_ACTIONS], ("Command", "x")])
    assert extra.status == "WARN" and "write= holds command" in extra.detail


def test_check_read_pure() -> None:
    seen = EventsSeen()
    seen.add("FullyBooted", "system,all")
    seen.add("Newexten", "dialplan,all")
    result = check_read("assist", seen)
    assert result.status == "PASS" and result.detail.startswith("reads system,dialplan (seen)")
    seen.add("RTCPReceived", "reporting,all")
    warn = check_read("assist", seen)
    assert warn.status == "WARN" and "reporting (RTCPReceived)" in warn.detail
    fail = check_read("assist", {"call": "Newchannel"}, fully_booted=False)
    assert fail.status == "FAIL" and "read = system,call,dtmf,dialplan" in fail.fix


# --- simulator users -------------------------------------------------------------------------


def test_scenario_users_default_to_the_shipped_classes() -> None:
    sc = Scenario.from_dict({"credentials": {"ami_users": [
        {"username": "ro", "secret": "x", "read": "call"}]}})
    main = sc.credentials.ami_user("assist")
    assert main is not None and (main.read, main.write) == (REQUIRED_READ, REQUIRED_WRITE)
    ro = sc.credentials.ami_user("ro")
    assert ro is not None and (ro.read, ro.write) == ({"call"}, REQUIRED_WRITE)
    assert sc.credentials.ami_user("nobody") is None
    with pytest.raises(ConfigError) as info:
        Scenario.from_dict({"credentials": {"ami_read": "call,nope"}})
    assert info.value.key == "credentials.ami_read"
    with pytest.raises(ConfigError) as info:
        Scenario.from_dict({"credentials": {"ami_users": [{"secret": "x"}]}})
    assert info.value.key == "credentials.ami_users[0]"
