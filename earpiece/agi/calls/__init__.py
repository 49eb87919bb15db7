"""Calls: the call registry (grouping channels into calls from AMI and ARI evidence, resync),
the call model and its state machine, and the outcome rules.
May import: earpiece.agi wire formats and the shared base modules."""
