"""ROS-free core: focal stacks, depth backends, models, synthesis, metrics.

Nothing under this package may import rclpy or any ROS message package.
"""
