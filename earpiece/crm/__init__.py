"""CRM storage: calls, legs, outcomes, call-progress verdicts and utterances.

SQLite is the embedded default, PostgreSQL the production backend; ``crm.url`` picks one
(:func:`earpiece.crm.backend.open_store`).
"""
