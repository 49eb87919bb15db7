"""The result of one ``earpiece doctor`` check, shared by the doctor and the checks it runs.

Kept apart from :mod:`earpiece.doctor` so that checks living elsewhere (the CRM check in
:mod:`earpiece.crm.health`) can return it without importing the doctor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CheckResult", "Status"]

#: WARN: works, but should be changed (e.g. more AMI privileges than needed); not a failure.
Status = Literal["PASS", "WARN", "FAIL", "SKIP"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str = ""
