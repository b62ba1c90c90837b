"""Synthetic data with ground truth: procedural RGB-D scenes and thin-lens focal-stack rendering."""
