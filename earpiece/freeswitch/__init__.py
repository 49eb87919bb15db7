"""FreeSWITCH attachment: the event socket (ESL) wire format, protocol and inbound client, and
the outcome of a call from its ESL events (``esl_message``, ``esl_event``, ``esl_protocol``,
``esl_client``, ``outcome``), calls grouped from channel events (``calls``) and
``uuid_audio_fork`` commands and per-party fork control (``audio_fork``). Rank 1, beside
:mod:`earpiece.agi`; see docs/freeswitch.md."""
