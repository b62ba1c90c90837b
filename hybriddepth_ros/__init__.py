"""hybriddepth_ros: metric depth from a focal stack (HybridDepth) for ROS 2.

`hybriddepth_ros.core` is ROS-free (numpy/torch/OpenCV only); `hybriddepth_ros.nodes`
holds the thin rclpy nodes that convert messages and call the core.
"""
