"""hybriddepth_ros: metric depth from a focal stack (HybridDepth) for ROS 2.

`hybriddepth_ros.core` is ROS-free (numpy/torch/OpenCV only); `hybriddepth_ros.nodes`
holds the thin rclpy nodes that convert messages and call the core.
"""

# The generated message bindings (hybriddepth_ros.msg) live in the colcon install
# space; extending the package path lets a source checkout on sys.path find them.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
