"""Scores: confusion-derived metrics, and a GFF3 against a reference (`dga evaluate`)."""
