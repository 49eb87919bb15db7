"""What Earpiece's AMI user may do: the ``read=``/``write=`` classes of ``manager.conf``.

One table for the shipped ``config/asterisk/manager.conf``, ``docs/attach-asterisk.md``,
``earpiece doctor`` (:mod:`earpiece.agi.ami_check`) and the simulator's AMI server. Pure data and
small pure functions, no I/O.

How Asterisk 22 applies the classes (``main/manager.c``, and the ``ami_permissions`` capture in
``shared/asterisk/captures/faults``):

* an **event** reaches a session only when the user's ``read=`` holds *every* class of the event
  (its ``Privilege:`` header less the trailing ``all``), and the session's ``Events:`` mask does
  too. ``read = all`` holds every class;
* an **action** runs when the user's ``write=`` holds *any* class of the action (its ``(Priv:
  ...)`` in ``ListCommands``), or the action has none (``Login``, ``Ping``, ``Events``...).
  Otherwise the whole reply is ``Response: Error`` / ``Message: Permission denied``;
* ``ListCommands`` lists only the actions the user may run.

Least privilege for Earpiece (Asterisk 22.10.1):

========== ======================================================================================
write
========== ======================================================================================
call       ``Hangup`` (system,call), ``SendText`` (call): hang up our originates, desk-phone text
originate  ``Originate`` (originate): dialer calls
reporting  ``CoreShowChannels`` (system,reporting): resync of live calls after a reconnect
message    ``MessageSend`` (message): prompts to the agent's desk phone (SIP MESSAGE)
========== ======================================================================================

``system`` is *not* granted: with it the user may also ``GetConfig`` any file, ``Reload``,
``ModuleLoad``, ``DBPut``, ``DialplanExtensionAdd`` (capture: the old shipped user could).
``Command`` (class ``command``) is not granted either: :meth:`AmiActions.command
<earpiece.agi.ami_actions.AmiActions.command>` stays a client helper that Earpiece itself never
sends (the Asterisk version comes from ARI ``GET /asterisk/info``).

========== ======================================================================================
read
========== ======================================================================================
system     ``FullyBooted`` after Login and restarts, ``Shutdown`` before a PBX restart
call       channels, dials, bridges, hangups, ``OriginateResponse``: the call registry
dtmf       ``DTMFBegin``/``DTMFEnd``: keys the agent presses as feedback on a prompt
dialplan   ``Newexten`` (dialplan steps, ``AppDial2`` of originates) and ``VarSet``
           (``EARPIECE_*`` tags, ``DIALSTATUS``): the call registry
========== ======================================================================================

Not read: ``reporting`` (``RTCPSent``/``RTCPReceived`` every few seconds per channel, unused),
``agent``, ``user``, ``cdr``, ``security`` and the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "ACTION_CLASSES", "ALL", "CLASSES", "CLIENT_ONLY_ACTIONS", "EARPIECE_ACTIONS",
    "EVENT_CLASSES", "READ_REASONS", "REQUIRED_READ", "REQUIRED_WRITE", "WRITE_REASONS",
    "ManagerUser", "action_allowed", "class_line", "classes_of_privilege", "event_allowed",
    "listed_actions", "parse_classes", "parse_manager_conf", "priv_text",
]

ALL = "all"

#: Asterisk 22's permission classes, in the order it prints them (``authority_to_str``).
CLASSES: tuple[str, ...] = (
    "system", "call", "log", "verbose", "command", "agent", "user", "config", "dtmf",
    "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc", "test", "security",
    "message",
)


def _table(groups: Mapping[str, str]) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for classes, names in groups.items():
        cls = frozenset(c for c in classes.split(",") if c)
        for name in names.split():
            out[name] = cls
    return out


#: Every AMI action of Asterisk 22.10.1 and the classes that allow it (any one of them; empty:
#: anyone logged in), from the ``ListCommands`` of a ``write = all`` user in the capture.
ACTION_CLASSES: dict[str, frozenset[str]] = _table({
    "": "BridgeDestroy BridgeInfo BridgeKick BridgeList BridgeTechnologyList "
        "BridgeTechnologySuspend BridgeTechnologyUnsuspend Challenge Events ListCommands Login "
        "Logoff Ping QueueChangePriorityCaller QueueReload QueueReset QueueRule QueueStatus "
        "QueueSummary QueueWithdrawCaller WaitEvent",
    "system,call": "AbsoluteTimeout Hangup LocalOptimizeAway MixMonitorMute PJSIPHangup "
                   "StopMixMonitor",
    "agent": "AgentLogoff Agents QueueAdd QueueLog QueueMemberRingInUse QueuePause QueuePenalty "
             "QueueRemove",
    "agi": "AGI",
    "aoc": "AOCMessage",
    "call": "Atxfer BlindTransfer Bridge CancelAtxfer ConfbridgeKick ConfbridgeLock "
            "ConfbridgeMute ConfbridgeSetSingleVideoSrc ConfbridgeUnlock ConfbridgeUnmute "
            "ControlPlayback FAXSession FAXSessions Park ParkedCalls Parkinglots PlayDTMF PlayMF "
            "Redirect SendFlash SendText Setvar",
    "command": "Command",
    "reporting": "ConfbridgeList ConfbridgeListRooms FAXStats",
    "system": "ConfbridgeStartRecord ConfbridgeStopRecord DBDel DBDelTree DBPut "
              "DialplanExtensionAdd DialplanExtensionRemove Filter MixMonitor ModuleCheck "
              "ModuleLoad MuteAudio PJSIPNotify PJSIPSetMaintenance PJSIPShowAors PJSIPShowAuths "
              "PJSIPShowContacts PJSIPShowEndpoint PJSIPShowEndpoints "
              "PJSIPShowRegistrationInboundContactStatuses PJSIPShowRegistrationsInbound "
              "PJSIPShowResourceLists PJSIPShowSubscriptionsInbound "
              "PJSIPShowSubscriptionsOutbound SorceryMemoryCacheExpire "
              "SorceryMemoryCacheExpireObject SorceryMemoryCachePopulate "
              "SorceryMemoryCacheStale SorceryMemoryCacheStaleObject",
    "system,reporting": "CoreSettings CoreShowChannelMap CoreShowChannels CoreStatus DBGet "
                        "DBGetTree IAXnetstats IAXpeerlist IAXpeers IAXregistry LoggerRotate "
                        "PJSIPQualify PJSIPRegister PJSIPShowMaintenance "
                        "PJSIPShowRegistrationsOutbound PJSIPUnregister",
    "config": "CreateConfig ListCategories UpdateConfig",
    "call,reporting": "DeviceStateList ExtensionState ExtensionStateList Getvar MailboxCount "
                      "MailboxStatus PresenceState PresenceStateList VoicemailBoxSummary "
                      "VoicemailUsersList VoicemailUserStatus",
    "system,config": "GetConfig GetConfigJSON Reload",
    "message": "MessageSend",
    "originate": "Originate",
    "config,reporting": "ShowDialPlan",
    "system,call,reporting": "Status",
    "user": "UserEvent VoicemailForward VoicemailMove VoicemailRefresh VoicemailRemove",
})

#: Every action Earpiece sends -> (the class it relies on, "" for none; who sends it).
EARPIECE_ACTIONS: dict[str, tuple[str, str]] = {
    "Login": ("", "AMI client (Events: on), doctor"),
    "Logoff": ("", "AMI client, doctor"),
    "Ping": ("", "AMI client keepalive"),
    "ListCommands": ("", "doctor (which actions the user may run)"),
    "Originate": ("originate", "dialer originates (Service.originate)"),
    "Hangup": ("call", "hanging up a channel"),
    "CoreShowChannels": ("reporting", "registry resync after every AMI reconnect"),
    "SendText": ("call", "text to a channel in a call"),
    "MessageSend": ("message", "prompts to the agent's desk phone (SIP MESSAGE)"),
}

#: Client helpers Earpiece itself never sends; the shipped user may not run them.
CLIENT_ONLY_ACTIONS: dict[str, str] = {"Command": "command"}

#: write= classes Earpiece needs, and why (the comments of the shipped manager.conf).
WRITE_REASONS: dict[str, str] = {
    "call": "Hangup (system,call), SendText (call)",
    "reporting": "CoreShowChannels (system,reporting): resync after a reconnect",
    "originate": "Originate: dialer calls",
    "message": "MessageSend: prompts to the agent's desk phone",
}
REQUIRED_WRITE: frozenset[str] = frozenset(WRITE_REASONS)

#: The class of each event Earpiece reads or the simulator sends (the ``Privilege:`` header of
#: Asterisk 22.10.1, less ``all``).
EVENT_CLASSES: dict[str, str] = {
    **dict.fromkeys((
        "Newchannel", "Newstate", "NewCallerid", "NewConnectedLine", "DialBegin", "DialState",
        "DialEnd", "HangupRequest", "SoftHangupRequest", "Hangup", "OriginateResponse",
        "BridgeCreate", "BridgeEnter", "BridgeLeave", "BridgeDestroy", "LocalBridge",
        "ChanSpyStart", "ChanSpyStop", "Rename", "DeviceStateChange", "MessageWaiting",
    ), "call"),
    "Newexten": "dialplan",
    "VarSet": "dialplan",
    "FullyBooted": "system",
    "Shutdown": "system",
    "Reload": "system",
    "DTMFBegin": "dtmf",
    "DTMFEnd": "dtmf",
    "RTCPSent": "reporting",
    "RTCPReceived": "reporting",
    "UserEvent": "user",
    "SuccessfulAuth": "security",
    "RequestBadFormat": "security",
}

#: read= classes Earpiece needs, and why.
READ_REASONS: dict[str, str] = {
    "system": "FullyBooted after Login, Shutdown before a PBX restart",
    "call": "Newchannel, Dial*, Bridge*, Hangup, OriginateResponse: the call registry",
    "dtmf": "DTMFBegin/DTMFEnd: the agent's feedback keys",
    "dialplan": "Newexten and VarSet: dialplan steps and EARPIECE_* tags in the call registry",
}
REQUIRED_READ: frozenset[str] = frozenset(READ_REASONS)


@dataclass(frozen=True)
class ManagerUser:
    """One ``[user]`` of manager.conf: its ``read=`` and ``write=`` classes."""

    name: str
    read: frozenset[str] = frozenset()
    write: frozenset[str] = frozenset()


def parse_classes(value: str) -> frozenset[str]:
    """``"system,call"`` -> the classes; ``ValueError`` names an unknown one."""
    out = frozenset(p.strip().lower() for p in value.split(",") if p.strip())
    unknown = sorted(out - set(CLASSES) - {ALL})
    if unknown:
        raise ValueError(f"unknown AMI class {', '.join(unknown)!s} (known: "
                         f"{','.join(CLASSES)},{ALL})")
    return out


def class_line(classes: Iterable[str]) -> str:
    """The classes in Asterisk's order, as manager.conf takes them: ``"system,call,dtmf"``."""
    wanted = set(classes)
    return ",".join([c for c in CLASSES if c in wanted] + ([ALL] if ALL in wanted else []))


def priv_text(classes: Iterable[str]) -> str:
    """``Privilege:`` / ``(Priv: ...)`` text of Asterisk: ``"call,all"``, ``"<none>"``."""
    line = class_line(set(classes) - {ALL})
    return f"{line},{ALL}" if line else "<none>"


def classes_of_privilege(privilege: str) -> frozenset[str]:
    """``"call,all"`` -> ``{"call"}`` (``all`` is printed after every event's classes)."""
    return frozenset(p.strip().lower() for p in privilege.split(",")
                     if p.strip() and p.strip().lower() != ALL)


def event_allowed(privilege: str, read: Iterable[str]) -> bool:
    """May a user with ``read`` classes receive an event with this ``Privilege:`` header?"""
    held = set(read)
    return ALL in held or classes_of_privilege(privilege) <= held


def action_allowed(action: str, write: Iterable[str]) -> bool:
    """May a user with ``write`` classes run ``action``? (unknown actions: not decided here)."""
    needed = _action_classes(action)
    held = set(write)
    return not needed or ALL in held or bool(needed & held)


def _action_classes(action: str) -> frozenset[str]:
    found = ACTION_CLASSES.get(action)
    if found is None:
        lowered = {k.lower(): v for k, v in ACTION_CLASSES.items()}
        found = lowered.get(action.lower(), frozenset())
    return found


def listed_actions(headers: Iterable[tuple[str, str]]) -> set[str]:
    """Action names of a ``ListCommands`` answer (every header but Response/ActionID/...)."""
    skip = {"response", "actionid", "message", "eventlist"}
    return {k for k, _ in headers if k.lower() not in skip}


def parse_manager_conf(text: str) -> dict[str, ManagerUser]:
    """The users of a manager.conf text (``[general]`` left out). A later ``read=``/``write=``
    replaces an earlier one, as in Asterisk; ``#include`` lines are skipped."""
    users: dict[str, ManagerUser] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            name = line[1:line.index("]")].strip()
            current = None if name.lower() == "general" else name
            if current is not None:
                users.setdefault(current, ManagerUser(current))
            continue
        key, sep, value = line.partition("=")
        if current is None or not sep:
            continue
        key = key.strip().lower()
        value = value.lstrip(">").strip()
        user = users[current]
        if key == "read":
            users[current] = ManagerUser(current, parse_classes(value), user.write)
        elif key == "write":
            users[current] = ManagerUser(current, user.read, parse_classes(value))
    return users
