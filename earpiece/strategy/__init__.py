"""Strategy: call phases, prompt policy, recommender, QC rules, quality scores."""
