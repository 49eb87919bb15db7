"""Streaming speech recognition (faster-whisper): model, decoder, runner, stream, service,
filters, file transcription, Chinese script conversion and accuracy metrics.
May import: earpiece.media, earpiece.agi and the shared base modules."""
