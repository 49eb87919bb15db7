"""Call registry: groups Asterisk channels into calls and runs each call's state machine.

Fed by the AMI client (:meth:`Registry.on_ami_event`, :meth:`Registry.reconcile_ami`), the ARI
client (:meth:`Registry.on_ari_event`, :meth:`Registry.reconcile_ari`), the FastAGI tag hook
(:meth:`Registry.tag`), our own originates (:meth:`Registry.expect_originate`) and the audio CPA
(:meth:`Registry.record_audio_verdict`). Publishes :class:`~earpiece.events.CallStarted`,
:class:`~earpiece.events.ChannelJoined`, :class:`~earpiece.events.ChannelLeft`,
:class:`~earpiece.events.CallStateChanged`, :class:`~earpiece.events.CallOutcome` (once),
:class:`~earpiece.events.CallTagged` and :class:`~earpiece.events.CallEnded` (once).

Grouping (facts from ``shared/asterisk/README.md``):

* a channel created with the ``Linkedid`` of a known call joins it (Dial/Queue legs);
* the two halves of ``Local/x@ctx-N;1`` / ``;2`` are one call;
* ``DialBegin`` (AMI) / ``Dial`` (ARI, which has no linkedid) link caller and callee;
* helpers never make calls: ``Snoop/<uniqueid>-N`` joins the call of ``<uniqueid>``;
  ``UnicastRTP``/``AudioSocket``/``WebSocket`` join the call of a channel they share a bridge
  with; a Local pair running ``ChanSpy`` joins the spyee's call at ``ChanSpyStart``.

A new call stays *tentative* (nothing published) until it is known to be a real call: for a
non-Local channel its first dialplan step that is not ``AppDial`` (a dialled leg waits for the
Dial that links it to its caller); for a Local-only call an ``OriginateResponse`` not running a
spy application, a ``Dial`` from it, ``Stasis``/``AGI``, a tag, or its end. That is what keeps a
ChanSpy Local pair (``OriginateResponse Application: ChanSpy`` comes before ``ChanSpyStart``)
from ever being announced as a call.

Outcome: an answer settles it at once; failures are collected as ranked
:class:`~earpiece.agi.calls.outcome.Evidence` and settle when the customer channel is gone or
the call ends (a PJSIP 603 sends ``DialEnd NOANSWER`` *and* cause 21: the cause wins). Every
piece of evidence is kept with its source; those that disagree with the outcome are listed as such.

Roles: the customer is the originated channel (first dialplan step ``AppDial2``, or the
Originate's own ``DialBegin`` that has only ``Dest*`` headers) or, inbound, the first channel;
the agent is the destination of a Dial from the customer (or its Local half).

Resync (:meth:`Registry.reconcile_ami` / :meth:`Registry.reconcile_ari`): known live channels
keep their call, unknown ones make calls (state from the listing: ``Up`` = answered), known
channels missing from the listing leave (``source="resync"``) and their calls end; our own
Originates bound to channels created during the outage keep their reserved ids; ones whose
response was lost and that have no live channel end as failed. Channels that are gone are
remembered (bounded), so replayed or late events never bring a call back.

The registry is a stack of layers, one module each:
:mod:`~earpiece.agi.calls.grouping` (shared state, constants, lookups, grouping channels into
calls), :mod:`~earpiece.agi.calls.lifecycle` (evidence, outcome, confirm/hangup/end, the tag and
audio entry points) and :mod:`~earpiece.agi.calls.signalling` (dialplan, Dial links, variables,
our Originates), on which :mod:`~earpiece.agi.calls.ami_evidence`,
:mod:`~earpiece.agi.calls.ari_evidence` and :mod:`~earpiece.agi.calls.resync` each build;
:class:`Registry` combines the last three and :mod:`~earpiece.agi.calls.adoption` (calls a
previous Earpiece left open, re-adopted or closed at start-up). The names other modules import
from here are re-exported.
"""

from __future__ import annotations

from earpiece.agi.calls.adoption import Adoption
from earpiece.agi.calls.ami_evidence import AmiEvidence
from earpiece.agi.calls.ari_evidence import AriEvidence
from earpiece.agi.calls.grouping import (
    CALL_ID_VARIABLE,
    CALLER_APPS,
    CONFIRMING_APPS,
    DIALLED_APP,
    ORIGINATED_APP,
    RESYNC_GRACE_S,
    SPY_APPS,
    STATE_NAMES,
    UNKNOWN_UNIQUEID,
    RegistryStats,
)
from earpiece.agi.calls.resync import Resync

__all__ = [
    "CALLER_APPS",
    "CALL_ID_VARIABLE",
    "CONFIRMING_APPS",
    "DIALLED_APP",
    "ORIGINATED_APP",
    "RESYNC_GRACE_S",
    "SPY_APPS",
    "STATE_NAMES",
    "UNKNOWN_UNIQUEID",
    "Registry",
    "RegistryStats",
]


class Registry(AmiEvidence, AriEvidence, Resync, Adoption):
    """Live calls keyed by Earpiece call id; see the module docstring."""
