"""CRM storage: calls, legs, outcomes, call-progress verdicts and utterances (SQLite default)."""
