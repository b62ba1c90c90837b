"""Command-line tools (demo, benchmark, focus calibration)."""
