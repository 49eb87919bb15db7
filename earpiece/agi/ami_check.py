"""The AMI permission checks of ``earpiece doctor``, as pure functions over what the AMI said.

What a user can learn about its own classes over AMI (``ami_permissions`` capture):

* **write**: ``ListCommands`` lists exactly the actions the user may run. A needed action that
  is missing means a missing class (FAIL); a listed action none of whose classes Earpiece needs
  (``GetConfig``, ``Reload``, ``ModuleLoad``, ``DBPut``, ``Command``...) proves a class it
  should not hold (WARN).
* **read**: only the events that arrive. After ``Login`` with ``Events: on`` Asterisk sends
  ``FullyBooted`` (``Privilege: system,all``) only to users whose ``read=`` holds ``system``;
  every event's ``Privilege`` names classes the user holds. A class outside
  :data:`~earpiece.agi.ami_permissions.REQUIRED_READ` seen that way (``security`` from the
  doctor's own ``SuccessfulAuth`` when ``read = all``, ``reporting`` from RTCP...) WARNs;
  ``call``/``dialplan``/``dtmf`` events only flow with live calls, so their absence on an idle
  PBX proves nothing and the result says how to confirm them.

The doctor (:mod:`earpiece.doctor`) does the I/O and calls :func:`check_write` and
:func:`check_read`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from earpiece.agi.ami_permissions import (
    ACTION_CLASSES,
    EARPIECE_ACTIONS,
    REQUIRED_READ,
    REQUIRED_WRITE,
    class_line,
    classes_of_privilege,
    listed_actions,
)
from earpiece.checks import CheckResult

__all__ = [
    "NEEDED_ACTIONS", "READ_LINE", "WRITE_LINE", "EventsSeen", "check_read", "check_write",
    "extra_write_evidence",
]

#: Actions Earpiece sends that need a class, in the order the doctor names them.
NEEDED_ACTIONS: tuple[str, ...] = tuple(a for a, (cls, _) in EARPIECE_ACTIONS.items() if cls)
WRITE_LINE = class_line(REQUIRED_WRITE)
READ_LINE = class_line(REQUIRED_READ)

# Listed first when naming actions the user should not have.
_NOTABLE = ("Command", "GetConfig", "UpdateConfig", "Reload", "ModuleLoad", "DBPut",
            "DialplanExtensionAdd", "UserEvent", "Agents", "Setvar", "Redirect")


def _reload_hint(username: str) -> str:
    return (f"then `asterisk -rx 'manager reload'`; `asterisk -rx 'manager show user "
            f"{username}'` shows its read/write classes")


def extra_write_evidence(listed: Iterable[str]) -> tuple[list[str], list[str]]:
    """(actions that prove classes Earpiece does not need, those classes as text).

    Each class group is ``"system"`` when certain, ``"system|config"`` when the action only
    proves one of them.
    """
    actions = [a for a in listed if ACTION_CLASSES.get(a) and
               not (ACTION_CLASSES[a] & REQUIRED_WRITE)]
    certain = {next(iter(ACTION_CLASSES[a])) for a in actions if len(ACTION_CLASSES[a]) == 1}
    groups = [class_line(certain)] if certain else []
    for group in sorted({ACTION_CLASSES[a] for a in actions if not ACTION_CLASSES[a] & certain},
                        key=class_line):
        groups.append(class_line(group).replace(",", "|"))
    order = {name: i for i, name in enumerate(_NOTABLE)}
    actions.sort(key=lambda a: (order.get(a, len(order)), a))
    return actions, [g for grp in groups for g in grp.split(",") if g]


def check_write(username: str, listing: Iterable[tuple[str, str]] | None) -> CheckResult:
    """``ami.permissions`` from the headers of the ``ListCommands`` answer (None: no answer)."""
    fix_line = f"manager.conf [{username}]: write = {WRITE_LINE}"
    if listing is None:
        return CheckResult("ami.permissions", "FAIL", "ListCommands was not answered",
                           f"{fix_line}; {_reload_hint(username)}")
    listed = listed_actions(listing)
    missing = [a for a in NEEDED_ACTIONS if a not in listed]
    if missing:
        lacking = class_line({EARPIECE_ACTIONS[a][0] for a in missing})
        return CheckResult(
            "ami.permissions", "FAIL",
            f"user '{username}' may not run: {', '.join(missing)}",
            f"{fix_line} (missing: {lacking}); {_reload_hint(username)}")
    extra, classes = extra_write_evidence(listed)
    if extra:
        every = all(a in listed for a, cls in ACTION_CLASSES.items() if cls)
        held = "all" if every else ", ".join(classes)
        shown = ", ".join(extra[:6]) + (f" and {len(extra) - 6} more" if len(extra) > 6 else "")
        return CheckResult(
            "ami.permissions", "WARN",
            f"user '{username}' may also run {shown}: write= holds {held}, which Earpiece "
            f"does not need",
            f"{fix_line} (least privilege: drop {held}); {_reload_hint(username)}")
    return CheckResult("ami.permissions", "PASS",
                       f"may run {', '.join(NEEDED_ACTIONS)}; nothing it does not need")


class EventsSeen:
    """The classes of the events a doctor session received (from their ``Privilege``)."""

    def __init__(self) -> None:
        self.by_class: dict[str, str] = {}
        self.fully_booted = False

    def add(self, event: str | None, privilege: str | None) -> None:
        if event == "FullyBooted":
            self.fully_booted = True
        for cls in classes_of_privilege(privilege or ""):
            self.by_class.setdefault(cls, event or "?")


def check_read(username: str, seen: EventsSeen | Mapping[str, str],
               fully_booted: bool | None = None) -> CheckResult:
    """``ami.events``: the read classes, from what arrived after ``Login`` with events on."""
    if isinstance(seen, EventsSeen):
        by_class, booted = seen.by_class, seen.fully_booted
    else:
        by_class, booted = dict(seen), bool(fully_booted)
    fix_line = f"manager.conf [{username}]: read = {READ_LINE}"
    if not booted:
        return CheckResult(
            "ami.events", "FAIL",
            f"no FullyBooted after Login (Events: on): user '{username}' does not read class "
            f"system (or Asterisk is still booting)",
            f"{fix_line}; {_reload_hint(username)}")
    extra = sorted(set(by_class) - REQUIRED_READ, key=lambda c: class_line([c]))
    if extra:
        named = ", ".join(f"{c} ({by_class[c]})" for c in extra)
        return CheckResult(
            "ami.events", "WARN",
            f"user '{username}' receives events Earpiece does not need: {named}",
            f"{fix_line} (least privilege: drop {', '.join(extra)}, or `all`); "
            f"{_reload_hint(username)}")
    confirmed = class_line(by_class)
    unseen = class_line(REQUIRED_READ - set(by_class))
    detail = f"reads {confirmed} (seen)"
    if unseen:
        detail += (f"; {unseen} only show with live calls: check read = {READ_LINE} with "
                   f"`asterisk -rx 'manager show user {username}'`")
    return CheckResult("ami.events", "PASS", detail)
