"""Customer emotion, live: ``voice`` parameters with a per-speaker baseline, ``text`` emotion
(English and Mandarin; ``lexicon`` evidence), voice ``models`` (z-score default, PCA+GMM,
torch ``mlp``, ONNX) trained by ``train``, ``fusion`` into a per-utterance label and a smoothed
per-call index, and the ``stage`` that runs them on the bus; ``cmd`` is ``earpiece emotion``."""
