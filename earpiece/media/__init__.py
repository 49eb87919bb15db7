"""Media: RTP, codecs, jitter buffer, VAD, call-progress/AMD, ASR."""
