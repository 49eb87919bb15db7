"""One exception tree for Earpiece; lower-level errors are translated at the boundaries.

Wire-format parsers raise :class:`ProtocolError` subclasses; protocol classes catch them, count
the bad input and drop it, so a malformed frame never escapes the protocol layer.
"""

from __future__ import annotations


class EarpieceError(Exception):
    """Base class of every error Earpiece raises on purpose."""


class ConfigError(EarpieceError):
    """Invalid configuration; the message names the file and the key."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ""
        if file is not None and key is not None:
            where = f"{file}: {key}: "
        elif file is not None:
            where = f"{file}: "
        elif key is not None:
            where = f"{key}: "
        super().__init__(f"{where}{message}")


class ProtocolError(EarpieceError):
    """Malformed wire data (AMI, ARI, RTP, AudioSocket, FastAGI)."""


class AmiProtocolError(ProtocolError):
    """Malformed AMI message."""


class AriProtocolError(ProtocolError):
    """Malformed ARI JSON (event or REST body)."""


class RtpProtocolError(ProtocolError):
    """Malformed RTP or RTCP datagram."""


class AudioSocketProtocolError(ProtocolError):
    """Malformed AudioSocket frame."""


class AgiProtocolError(ProtocolError):
    """Malformed FastAGI request or reply."""


class PbxError(EarpieceError):
    """The PBX refused or failed an action (AMI ``Response: Error``, ARI 4xx/5xx)."""


class PbxConnectionError(PbxError):
    """The PBX is unreachable or the connection was lost."""


class PbxAuthError(PbxError):
    """The PBX rejected the credentials."""


class ModelError(EarpieceError):
    """A model (Whisper, emotion) could not be found, assembled or loaded."""


class CrmError(EarpieceError):
    """The CRM database refused or failed a statement."""


class CrmConnectionError(CrmError):
    """The CRM database server is unreachable or rejected the connection."""


class EslProtocolError(ProtocolError):
    """Malformed FreeSWITCH event-socket (ESL) frame, command or event."""
