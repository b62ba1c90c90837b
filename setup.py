"""pip installation of the ROS-free core and its command-line tools, for use outside ROS.

Inside a ROS 2 workspace the package is built by colcon through CMakeLists.txt
(ament_cmake: the FocalStack message needs rosidl); this file is not used there.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["hybriddepth_ros", "hybriddepth_ros.*"]),
    install_requires=[
        "numpy>=1.24",
        "torch>=2.1",
        "opencv-python-headless>=4.8",
        "pyyaml>=6",
        "websockets>=13",  # the phone backend: websockets.asyncio (checked at its start)
        "h5py>=3.8",
        "rosbags>=0.10",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    # The message definitions, so that ROS bags are read without a ROS install (core/data/bags.py).
    data_files=[("share/hybriddepth_ros/msg", ["msg/FocalStack.msg", "msg/FocusState.msg"])],
    entry_points={
        "console_scripts": [
            "hybriddepth-calibrate-focus = hybriddepth_ros.tools.calibrate_focus:main",
            "hybriddepth-register-stack = hybriddepth_ros.tools.register_stack:main",
            "hybriddepth-benchmark = hybriddepth_ros.tools.benchmark:main",
            "hybriddepth-eval = hybriddepth_ros.tools.evaluate:main",
            "hybriddepth-train = hybriddepth_ros.tools.train:main",
        ]
    },
)
