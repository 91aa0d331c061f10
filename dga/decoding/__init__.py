"""Decoders by name (`registry`): per-base probabilities of one sequence -> gene models (HMM, rules),
their signal models and confidence."""
