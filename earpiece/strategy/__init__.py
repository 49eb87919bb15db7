"""Strategy: the customer's emotion x the call's time slot -> the agent's next move.

* ``slots``: time of day x weekday in the site's time zone, optionally x call phase;
* ``campaign``: the campaign file (products, per-language prompt lines, common answers);
* ``recommender``: success per (slot, product) from history (window, half-life decay, Beta
  lower bound vs a threshold, optional Thompson sampling, online feedback, cold start);
* ``policy``: positive -> recommend, neutral -> introduce / answer, negative -> soothe, each
  prompt with its reason;
* ``throttle``: per-call rate limit, de-duplication and hysteresis of prompts;
* ``settings``: ``[strategy]`` (campaign file, throttle);
* ``stage``: the service's strategy stage: customer emotion (and questions) on the bus ->
  ``PromptReady``, per call, in the call's slot and campaign.

Still to come here: QC rules and quality scores.
"""
