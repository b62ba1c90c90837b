"""Neural network components of HybridDepth, each swappable on its own (torch only)."""
