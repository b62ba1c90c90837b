"""From a focal stack to published depth: backends, their registry, the fusion step, point clouds."""
