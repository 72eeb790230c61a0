"""Evaluation: metrics and the decision rule, thresholds, analysis, and the files a run writes."""
