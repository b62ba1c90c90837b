"""The focal stack and its geometry: frames with focus distances, intrinsics, registration, all-in-focus."""
