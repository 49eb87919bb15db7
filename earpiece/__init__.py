"""Earpiece: real-time agent assist for Asterisk call centres."""

__version__ = "0.1.0"
