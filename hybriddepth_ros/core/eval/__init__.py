"""Scoring depth against ground truth and drawing it."""
