"""rclpy nodes: message conversion around the ROS-free core."""
