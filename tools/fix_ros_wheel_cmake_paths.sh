#!/usr/bin/env bash
# The ROS 2 PyPI wheels' CMake files carry the paths of the machine they were
# built on; point them at this Python's headers and this venv's site-packages
# so that colcon/CMake (rosidl_generate_interfaces) work in the venv.
set -euo pipefail
venv=${1:?usage: fix_ros_wheel_cmake_paths.sh VENV}
py="$venv/bin/python"
include_dir=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
site_dir=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# Idempotent: a second run finds nothing to rewrite (grep exits 1, which is fine).
{ grep -rlZ --include='*.cmake' '/opt/python/cp311-cp311' "$venv/share" 2>/dev/null || true; } |
  xargs -0 -r sed -i \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$include_dir#g" \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages#$site_dir#g"
