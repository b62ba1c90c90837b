"""Capture backends that produce focal stacks (ROS-free)."""
