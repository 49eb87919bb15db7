"""Every ``earpiece bench ...`` command (media, amd with labelled sets and sweep, asr, crm,
sim): benchmarks are tools, not library code. May import any stage and earpiece.sim."""
