"""Call-progress analysis from audio: tones before answer, human/machine after answer.

:class:`CallProgressDetector` is a streaming state machine fed 20 ms frames of 8 kHz int16
audio (the far end). Before :meth:`CallProgressDetector.answer` it only looks for call-progress
tones in early media (ringback, busy, congestion, SIT, fax) and intercept wording; after it, it
also decides human / machine / fax / silence as early as the evidence allows:

* a tone plan's cadence or the SIT sequence -> that label, whatever the phase;
* a beep (a steady pure tone that is not a known call-progress tone) after a greeting ->
  machine, ``beep_min_s`` into the beep; while one is sounding no "human" verdict is given;
* ``amd="model"`` (default): the greeting (speech bursts joined across short pauses) is
  described by timing features (:data:`earpiece.cpa.amd_model.FEATURES`) every frame and a
  small logistic model (:mod:`earpiece.cpa.amd_model`, trained on the evaluation set's
  ``tune`` split) gives P(machine); a confident score decides (machine at ``>= machine_p``,
  human at ``<= human_p`` once ``min_silence_s`` of silence follows the greeting); a greeting
  still running at ``hard_long_greeting_s`` is a machine whatever the score;
* ``amd="rules"``: the previous fixed rules: a greeting longer than ``long_greeting_s`` or
  with more than ``max_human_bursts`` bursts -> machine; a short greeting followed by
  ``human_silence_s`` of silence -> human;
* machine wording in a transcript handed to :meth:`add_transcript` -> machine;
* nothing but silence for ``silence_timeout_s`` -> silence (dead air may run past ``max_s``
  for that: a fax's CNG can stay quiet for 3.5 s); undecided at ``max_s`` ->
  unknown (deferred while a tone cadence is still being matched);
* after the verdict it keeps listening (:mod:`earpiece.cpa.late`): a tone or SIT revises any
  verdict, a beep / monologue / machine wording revises "human" to ``machine_late``
  (:attr:`CallProgressDetector.late`). A beep at a SIT frequency waits while a SIT may be
  under way, and the one or two speech-looking frames at a tone's edges are not speech.

:func:`analyze_audio` runs the same detector over a whole recording. Pure computation, no I/O.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from earpiece.cpa.amd_model import AmdModel, load_default
from earpiece.cpa.amd_words import word_evidence
from earpiece.cpa.late import MACHINE_LATE, LateWatch, ToneEdges, Utterance, rules_verdict
from earpiece.cpa.options import (
    INTERCEPT_PHRASES,
    LABELS,
    MACHINE_PHRASES,
    TONE_LABELS,
    CpaOptions,
    CpaResult,
    intercept_after_answer,
    phrase_in,
)
from earpiece.cpa.tones import (
    FRAME,
    FRAME_S,
    SIT_FIRST,
    SIT_SECOND,
    SIT_THIRD,
    WINDOW,
    CadenceMatcher,
    FrameTones,
    SitMatcher,
    ToneBank,
    TonePlan,
    frequency_sets,
    plans_for,
    resample_to_8k,
)

log = logging.getLogger(__name__)


class CallProgressDetector:
    """Streaming call-progress / answering-machine detector (see module docstring)."""

    def __init__(self, options: CpaOptions | None = None) -> None:
        self.options = options or CpaOptions()
        self.plans: tuple[TonePlan, ...] = plans_for(self.options.tone_plan)
        sets = frequency_sets(self.plans)
        self._bank = ToneBank(sets)
        self._set_index = {s: i for i, s in enumerate(sets)}
        self._plan_sets = frozenset(self._set_index[p.freqs] for p in self.plans)
        self._matchers = [CadenceMatcher(p) for p in self.plans]
        self._sit = SitMatcher([self._set_index[(f,)] for f in SIT_FIRST],
                               [self._set_index[(f,)] for f in SIT_SECOND],
                               [self._set_index[(f,)] for f in SIT_THIRD])
        self._window = np.zeros(WINDOW, dtype=np.float64)
        self._pending = np.zeros(0, dtype=np.int16)
        self.frames = 0
        self.answered = self.options.phase == "post_answer"
        self._answer_frame = 0
        self._pre_label: str | None = None
        self.result: CpaResult | None = None  # the post-answer (or final) verdict
        self.pre_answer_result: CpaResult | None = None
        self.late: CpaResult | None = None  # a revision of ``result`` (see earpiece.cpa.late)
        self._watch: LateWatch | None = None
        self._edges = ToneEdges()
        self._sit_segments: list[dict[str, float]] = []
        self._floor: float | None = None
        self._last_tone_s = -1e9
        self._tone_frames = 0
        self._tone_seen_label: str | None = None
        self._speech_frames = 0
        self._first_speech_s: float | None = None
        self._utt: Utterance | None = None
        self._utterances: list[dict[str, float]] = []
        self._last_speech_s: float | None = None
        self._pure_run: list[float] = []  # [freq, duration] of the current pure-tone run
        self._beeps: list[dict[str, float]] = []
        self._words: list[str] = []
        self._word_log_odds = 0.0
        self._word_cues: tuple[str, ...] = ()
        self._max_pause_s = 0.0
        self._model: AmdModel | None = None
        self._machine_p = self._human_p = self._min_silence_s = 0.0
        if self.options.amd == "model":
            o = self.options
            m = self._model = (AmdModel.load(o.model_path) if o.model_path
                               else load_default())
            self._machine_p = o.machine_p if o.machine_p is not None else m.machine_p
            self._human_p = o.human_p if o.human_p is not None else m.human_p
            self._min_silence_s = (o.min_silence_s if o.min_silence_s is not None
                                   else m.min_silence_s)

    # ---- public API -------------------------------------------------------------------------
    def answer(self) -> None:
        """Mark the answer: post-answer analysis starts now, ``decision_s`` counts from here."""
        if self.answered:
            return
        self.answered = True
        self._answer_frame = self.frames
        self._reset_speech()
        self._floor = None  # the answered line's noise floor is learnt afresh

    @property
    def t(self) -> float:
        """Seconds since answer (or since the start of the stream before answer)."""
        return (self.frames - self._answer_frame) * FRAME_S

    def feed(self, frame: npt.NDArray[np.int16]) -> CpaResult | None:
        """Feed audio (ideally 160 samples); return a verdict the first time one is reached.

        Before answer a verdict is returned whenever the detected early-media label changes;
        after answer at most once.
        """
        samples = np.asarray(frame, dtype=np.int16).ravel()
        if self._pending.size:
            samples = np.concatenate([self._pending, samples])
        out: CpaResult | None = None
        n = samples.size // FRAME
        for i in range(n):
            r = self._frame(samples[i * FRAME:(i + 1) * FRAME])
            if r is not None:
                out = r
        self._pending = samples[n * FRAME:].copy()
        return out

    def add_transcript(self, text: str) -> CpaResult | None:
        """Hand recognised words to the detector (machine greeting / intercept wording)."""
        self._words.append(text)
        low = text.lower()
        if not self.answered:
            hit = phrase_in(low, INTERCEPT_PHRASES)
            if hit:
                return self._pre("sit", 0.9, {"rule": "intercept_words", "phrase": hit})
            return None
        if self.result is not None:
            return self._late_words(low)
        hit = phrase_in(low, intercept_after_answer)
        if hit:
            return self._decide("sit", 0.9, "intercept_words", phrase=hit)
        hit = phrase_in(low, MACHINE_PHRASES)
        if hit:
            return self._decide("machine", 0.95, "machine_words", phrase=hit)
        if self.options.words_weight > 0:
            ev = word_evidence(text)  # partials grow: the latest transcript replaces the last
            self._word_log_odds = ev.log_odds * self.options.words_weight
            self._word_cues = ev.cues
            utt = self._utt
            if self.options.amd == "model" and utt is not None \
                    and utt.real_s >= self.options.min_utterance_s:
                return self._model_verdict(self.t, utt)
        return None

    def _late_words(self, low: str) -> CpaResult | None:
        if not self.watching or self.result is None or self.result.label != "human":
            return None
        hit = phrase_in(low, intercept_after_answer)
        if hit:
            return self._revise("sit", 0.9, "intercept_words", phrase=hit)
        hit = phrase_in(low, MACHINE_PHRASES)
        return self._revise(MACHINE_LATE, 0.9, "late_machine_words", phrase=hit) if hit else None

    @property
    def watching(self) -> bool:
        """After the verdict, still listening for a revision (see :mod:`earpiece.cpa.late`)."""
        w = self._watch
        return w is not None and self.late is None and w.open(self.t)

    def agent_activity(self, speaking: bool) -> None:
        """The agent's voice activity for the frame just fed (ends the watch once the agent
        has spoken and the customer answered)."""
        if self._watch is not None:
            self._watch.agent(speaking, self.t)

    @property
    def first_speech_s(self) -> float | None:
        """When the greeting's first speech started (seconds after answer), None before it."""
        return self._first_speech_s if self.answered else None

    @property
    def words_heard(self) -> bool:
        """A transcript has been handed over since answer."""
        return bool(self._words)

    def greeting_features(self) -> npt.NDArray[np.float64] | None:
        """The current greeting in :data:`~earpiece.cpa.amd_model.FEATURES` order.

        None before answer, before the first speech, and between a click and real speech.
        """
        utt = self._utt
        if not self.answered or utt is None or utt.real_s < self.options.min_utterance_s \
                or self._first_speech_s is None:
            return None
        t = self.t
        span = utt.last_speech_s - utt.start_s
        silence = t - utt.last_speech_s
        return np.array([span, utt.speech_s, float(utt.bursts), silence,
                         float(len(self._utterances)), self._speech_frames * FRAME_S,
                         t - self._first_speech_s, self._max_pause_s,
                         utt.speech_s / max(span, FRAME_S), span * silence, span * span,
                         min(silence, 1.0)], dtype=np.float64)

    def finish(self) -> CpaResult:
        """End of stream: the verdict so far, or the best guess from what was seen."""
        if self.result is not None:
            return self.result
        if not self.answered:
            if self.pre_answer_result is not None:
                return self.pre_answer_result
            return CpaResult("unknown", 0.0, self.t, self._evidence("end_of_stream"))
        utt = self._utt
        if utt is not None:
            span = utt.last_speech_s - utt.start_s
            if span >= self.options.long_greeting_s:
                return self._decide("machine", 0.6, "end_long_greeting")
            if span >= self.options.min_utterance_s:
                return self._decide("human", 0.5, "end_short_greeting")
        if self._first_speech_s is None and self._tone_frames == 0:
            return self._decide("silence", 0.6 if self.t >= 2.0 else 0.3, "end_silence")
        return self._decide("unknown", 0.0, "end_of_stream")

    # ---- per frame ---------------------------------------------------------------------------
    def _frame(self, frame: npt.NDArray[np.int16]) -> CpaResult | None:
        self._window[:-FRAME] = self._window[FRAME:]
        self._window[-FRAME:] = frame
        ft = self._bank.analyse(self._window)
        self.frames += 1
        t = self.t
        tone_label = self._tones(ft, t)
        speech = self._vad(ft)
        self._beep(ft, t, speech)
        if not self.answered:
            if tone_label is not None:
                return self._pre(tone_label, 0.95, {"rule": "tone_cadence"})
            return None
        edge, back = self._edges.frame(ft.tone >= 0, speech, t)
        if back and self._utt is not None:
            self._utt.edge_s = min(self._utt.speech_s, self._utt.edge_s + back * FRAME_S)
        if tone_label is not None and tone_label == "fax" and self._first_speech_s is not None \
                and self._tone_seen_label == "fax.cng":
            tone_label = None  # a greeting, then something CNG-like: not a calling fax
        if self.result is not None:
            return self._after(tone_label, speech, edge, t)
        if tone_label is not None:
            return self._decide(tone_label, 0.95, "tone_cadence")
        self._speech(speech, t, edge)
        return self._amd(t)

    def _after(self, tone_label: str | None, speech: bool, edge: bool,
               t: float) -> CpaResult | None:
        w, first = self._watch, self.result
        if w is None or first is None or self.late is not None or not w.open(t):
            return None
        self._speech(speech, t, edge)
        if tone_label is not None and tone_label != first.label:
            return self._revise(tone_label, 0.95, "tone_cadence")
        if first.label != "human":
            return None
        o = self.options
        if self._beeps and self._beeps[-1]["end_s"] > w.verdict_s and not self._sit.partial():
            return self._revise(MACHINE_LATE, 0.9, "late_beep")
        run = self._pure_run
        if self._beep_sounding() and run[1] >= o.beep_min_s and not self._sit.partial():
            return self._revise(MACHINE_LATE, 0.9, "late_beep",
                                beep_sounding={"hz": round(run[0], 1), "dur_s": round(run[1], 3)})
        utt = self._utt
        if utt is not None and utt.real_s >= o.min_utterance_s:
            mono = utt.last_speech_s - max(utt.start_s, w.verdict_s)
            if mono >= o.late_monologue_s:
                return self._revise(MACHINE_LATE, 0.85, "late_monologue",
                                    monologue_s=round(mono, 3))
        return None

    def _tones(self, ft: FrameTones, t: float) -> str | None:
        if ft.tone >= 0:
            self._last_tone_s = t
            self._tone_frames += 1
        tone_set = self._bank.freq_sets[ft.tone] if ft.tone >= 0 else None
        found: str | None = None
        for m in self._matchers:
            if m.update(tone_set == m.plan.freqs) and found is None:
                found = m.plan.label
                self._tone_seen_label = m.plan.name
        if self._sit.update(ft.tone) and found is None:
            found = "sit"
            self._tone_seen_label = "sit"
            self._sit_segments = [{"hz": self._bank.freq_sets[i][0], "dur_s": round(d, 3)}
                                  for i, d in self._sit.segments()]
        return found

    def _vad(self, ft: FrameTones) -> bool:
        level = ft.level_dbfs
        if self._floor is None or level < self._floor:
            # digital silence is not a noise floor: never track below -70 dBFS
            self._floor = max(level, -70.0)
        else:
            self._floor += 0.01
        o = self.options
        if ft.tone >= 0 or ft.pure_fraction >= o.pure_fraction:
            return False
        return level >= max(self._floor + o.vad_margin_db, o.vad_min_dbfs)

    def _beep(self, ft: FrameTones, t: float, speech: bool) -> None:
        """Track runs of one steady pure tone (not a known call-progress tone): beeps."""
        o = self.options
        # tones of the cadence plans (fax, ringback...) are not beeps unless a greeting came
        # first; a beep may share a SIT segment's frequency (e.g. 1000 Hz)
        pure = ((ft.tone < 0 or ft.tone not in self._plan_sets
                 or self._first_speech_s is not None)
                and ft.pure_fraction >= o.pure_fraction
                and ft.level_dbfs >= o.vad_min_dbfs and ft.pure_hz >= 300.0)
        run = self._pure_run  # [first hz, duration, min level, max level]
        if pure and run and ft.level_dbfs < run[3] - 10.0:
            pure = False  # only the tail of the window still holds the tone: it has ended
        if pure and run and abs(ft.pure_hz - run[0]) <= 0.01 * run[0] + 8.0:
            if run[1] >= 2 * FRAME_S:  # the first frames may hold only part of the onset
                run[2] = min(run[2], ft.level_dbfs)
            run[1] += FRAME_S
            run[3] = max(run[3], ft.level_dbfs)
            return
        if run and o.beep_min_s <= run[1] <= o.beep_max_s and run[3] - run[2] <= 10.0:
            self._beeps.append({"hz": round(run[0], 1), "dur_s": round(run[1], 3),
                                "end_s": round(t, 3)})
        self._pure_run = [ft.pure_hz, FRAME_S, 0.0, -200.0] if pure else []

    def _speech(self, speech: bool, t: float, edge: bool = False) -> None:
        o = self.options
        utt = self._utt
        if speech:
            self._speech_frames += 1
            if utt is None or t - utt.last_speech_s > o.utterance_gap_s:
                if utt is not None:
                    self._close_utterance()
                if self._watch is not None:
                    self._watch.customer_started(t)
                utt = self._utt = Utterance(start_s=t - FRAME_S, last_speech_s=t,
                                             burst_last_s=t)
            else:
                if t - utt.burst_last_s > o.word_gap_s:
                    utt.bursts += 1
                    utt.max_pause_s = max(utt.max_pause_s, t - utt.burst_last_s - FRAME_S)
                utt.burst_last_s = t
                utt.last_speech_s = t
            utt.speech_s += FRAME_S
            utt.edge_s += FRAME_S if edge else 0.0
            if utt.real_s >= o.min_utterance_s:
                self._max_pause_s = max(self._max_pause_s, utt.max_pause_s)
                if self._first_speech_s is None:
                    self._first_speech_s = utt.start_s
            self._last_speech_s = t
        elif utt is not None and utt.real_s < o.min_utterance_s and \
                t - utt.last_speech_s > o.utterance_gap_s:
            self._utt = None  # a click, not speech

    def _close_utterance(self) -> None:
        utt = self._utt
        if utt is not None and utt.real_s >= self.options.min_utterance_s:
            self._utterances.append({"start_s": round(utt.start_s, 3),
                                     "end_s": round(utt.last_speech_s, 3),
                                     "speech_s": round(utt.speech_s, 3),
                                     "bursts": utt.bursts})

    def _beep_sounding(self) -> bool:
        """A steady pure tone has been sounding for a few frames after a greeting."""
        run = self._pure_run
        return bool(run) and self._first_speech_s is not None and run[1] >= 3 * FRAME_S \
            and run[3] - run[2] <= 10.0

    def _amd(self, t: float) -> CpaResult | None:
        o = self.options
        if o.amd == "off":
            return None
        # SIT first: its segments look like beeps (a beep after a greeting does not wait)
        sit_pending = self._first_speech_s is None and self._sit.partial()
        if self._beeps and self._beeps[-1]["end_s"] <= t and not sit_pending:
            return self._decide("machine", 0.9, "beep")
        run = self._pure_run
        if self._beep_sounding() and run[1] >= o.beep_min_s and not sit_pending:
            return self._decide("machine", 0.9, "beep",
                                beep_sounding={"hz": round(run[0], 1),
                                               "dur_s": round(run[1], 3)})
        utt = self._utt
        if o.amd == "model" and utt is not None and utt.real_s >= o.min_utterance_s:
            verdict = self._model_verdict(t, utt)
            if verdict is not None:
                return verdict
        elif utt is not None and utt.real_s >= o.min_utterance_s:
            ruled = rules_verdict(o, utt, t)
            if ruled is not None:
                return self._decide(*ruled)
        tone_recent = t - self._last_tone_s < 4.5
        if self._first_speech_s is None and self._utt is None and not tone_recent \
                and t >= o.silence_timeout_s and self._tone_frames == 0:
            return self._decide("silence", 0.85, "no_speech")
        # nothing said (a click may have opened an utterance) and no tone yet
        dead_air = self._first_speech_s is None and self._tone_frames == 0
        if t >= o.max_s and not (tone_recent and t < o.tone_max_s) \
                and not (dead_air and t < o.silence_timeout_s):
            if utt is not None and utt.real_s >= o.min_utterance_s:
                if t < o.max_s + o.human_silence_s:
                    return None
                p = self._p_machine()
                if p is not None:  # out of time: the model's best guess, at low confidence
                    return self._decide("machine" if p >= 0.5 else "human",
                                        0.5 + 0.3 * abs(p - 0.5), "analysis_time_model",
                                        p_machine=round(p, 3))
                return self._decide("unknown", 0.2, "analysis_time")
            if self._first_speech_s is None and self._tone_frames > 0:
                return self._decide("unknown", 0.3, "tone_without_cadence")
            return self._decide("unknown", 0.2, "analysis_time")
        return None

    def _p_machine(self) -> float | None:
        x = self.greeting_features()
        if self._model is None or x is None:
            return None
        p = self._model.probability(x)
        if self._word_log_odds:
            z = math.log(max(p, 1e-9) / max(1.0 - p, 1e-9)) + self._word_log_odds
            p = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))
        return p

    def _model_verdict(self, t: float, utt: Utterance) -> CpaResult | None:
        o = self.options
        span = utt.last_speech_s - utt.start_s
        if span >= o.hard_long_greeting_s:
            return self._decide("machine", 0.95, "long_greeting")
        p = self._p_machine()
        if p is None:
            return None
        extra: dict[str, Any] = {"p_machine": round(p, 3)}
        if self._words:
            extra["words"] = {"log_odds": round(self._word_log_odds, 3),
                              "cues": list(self._word_cues), "text": self._words[-1]}
        rule = "model+words" if self._word_log_odds else "model"
        waiting = (o.words_wait_s > 0 and not self._words and self._first_speech_s is not None
                   and t < self._first_speech_s + o.words_wait_s)
        if p >= self._machine_p and span >= o.min_machine_span_s and not waiting:
            return self._decide("machine", p, rule, **extra)
        silent = t - utt.last_speech_s
        if p <= self._human_p and silent >= self._min_silence_s and not self._pure_run:
            return self._decide("human", 1.0 - p, rule, **extra)
        return None

    # ---- results -----------------------------------------------------------------------------
    def _reset_speech(self) -> None:
        self._utt = None
        self._words = []  # early-media wording is not the greeting's
        self._word_log_odds = 0.0
        self._word_cues = ()
        self._utterances = []
        self._first_speech_s = None
        self._last_speech_s = None
        self._speech_frames = 0
        self._beeps = []
        self._pure_run = []
        self._max_pause_s = 0.0
        self._tone_frames = 0
        self._last_tone_s = -1e9
        for m in self._matchers:
            m.reset()
        self._sit.reset()

    def _evidence(self, rule: str, **extra: Any) -> dict[str, Any]:
        utt = self._utt
        utterances = list(self._utterances)
        if utt is not None and utt.real_s >= self.options.min_utterance_s:
            utterances.append({"start_s": round(utt.start_s, 3),
                               "end_s": round(utt.last_speech_s, 3),
                               "speech_s": round(utt.speech_s, 3), "bursts": utt.bursts})
        ev: dict[str, Any] = {
            "rule": rule,
            "phase": "post_answer" if self.answered else "pre_answer",
            "initial_silence_s": (round(self._first_speech_s, 3)
                                  if self._first_speech_s is not None else round(self.t, 3)),
            "speech_s": round(self._speech_frames * FRAME_S, 3),
            "utterances": utterances,
        }
        if utterances:
            first = utterances[0]
            ev["greeting_s"] = round(first["end_s"] - first["start_s"], 3)
            ev["bursts"] = first["bursts"]
        if self._last_speech_s is not None:
            ev["silence_after_s"] = round(self.t - self._last_speech_s, 3)
        if self._beeps:
            ev["beeps"] = list(self._beeps)
        if self._tone_seen_label:
            ev["tone_plan"] = self._tone_seen_label
        if self._tone_frames:
            ev["tone_frames"] = self._tone_frames
        if self._sit_segments:
            ev["sit_segments"] = list(self._sit_segments)
        ev.update(extra)
        return ev

    def _decide(self, label: str, confidence: float, rule: str, **extra: Any) -> CpaResult:
        self.result = CpaResult(label, confidence, round(self.t, 3),
                                self._evidence(rule, **extra))
        o = self.options
        if self.answered and o.revise_s > 0 and label not in ("sit", "unknown"):
            self._watch = LateWatch(label, self.t, self.t + o.revise_s)
        return self.result

    def _revise(self, label: str, confidence: float, rule: str, **extra: Any) -> CpaResult:
        w, first = self._watch, self.result
        assert w is not None and first is not None
        w.done = True
        self.late = CpaResult(label, confidence, round(self.t, 3), self._evidence(
            rule, phase="after_verdict", revises=first.label,
            after_s=round(self.t - w.verdict_s, 3), **extra))
        return self.late

    def _pre(self, label: str, confidence: float, extra: dict[str, Any]) -> CpaResult | None:
        if label == self._pre_label:
            return None
        self._pre_label = label
        rule = str(extra.pop("rule"))
        self.pre_answer_result = CpaResult(label, confidence, round(self.t, 3),
                                           self._evidence(rule, **extra))
        return self.pre_answer_result


def analyze_audio(samples: npt.NDArray[np.int16], rate: int, *,
                  options: CpaOptions | None = None,
                  transcript: str | None = None) -> CpaResult:
    """Run :class:`CallProgressDetector` over a whole mono recording (post-answer by default).

    Stops at the first verdict; a recording that ends first gets :meth:`finish`'s best guess.
    ``transcript`` (optional) is handed over before the audio, as an ASR result would be.
    """
    x = resample_to_8k(np.asarray(samples, dtype=np.int16).ravel(), rate)
    det = CallProgressDetector(options)
    if transcript:
        det.add_transcript(transcript)
    if det.answered and det.result is not None:
        return det.result
    best_pre: CpaResult | None = None
    for i in range(0, x.size - FRAME + 1, FRAME):
        r = det.feed(x[i:i + FRAME])
        if r is None:
            continue
        if det.answered:
            return r
        best_pre = r
    if best_pre is not None:
        return best_pre
    return det.finish()


__all__ = [
    "INTERCEPT_PHRASES",
    "LABELS",
    "MACHINE_PHRASES",
    "TONE_LABELS",
    "CallProgressDetector",
    "CpaOptions",
    "CpaResult",
    "analyze_audio",
    "resample_to_8k",
]
