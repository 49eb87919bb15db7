"""Delivery: the strategy's prompts to the agent, and the live feed.

* ``settings``: ``[delivery]`` (desk phone text length, sender, JSON body);
* ``phone``: the agent's desk phone: AMI ``MessageSend`` to ``pjsip:<endpoint>`` of the agent
  leg, with the PBX's answer kept per prompt (:class:`~earpiece.events.PromptDelivered`);
* ``feed``: the live feed: call state, transcripts, emotion and prompts per call as JSON
  messages, fanned out to subscribers (served as a websocket by :mod:`earpiece.web.feed`);
* ``whisper`` (+ ``whisper_audio``): each prompt spoken (espeak-ng) into the agent's ear only:
  Earpiece's RTP into an externalMedia channel bridged with a ``whisper=out`` snoop on the
  agent channel, torn down after playback (``[delivery] whisper``).

De-duplication and the rate limit are the strategy's throttle: every ``PromptReady`` is sent.
May import: the stages below it (``earpiece.agi`` for the AMI/ARI actions, ``earpiece.media``
for G.711, resampling and the fork's naming, ``earpiece.strategy``)
and the shared base (events, bus, errors).
"""
