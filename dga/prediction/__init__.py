"""Prediction: a model's network over whole sequences (both strands), then its decoder -> gene models."""
