"""Call-progress analysis and answering-machine detection: tones, the detector, the AMD model,
its training and profiles, greeting words, the app_amd baseline and the evaluation set.
May import: earpiece.asr, earpiece.media, earpiece.agi and the shared base modules."""
