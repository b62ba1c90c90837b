#!/usr/bin/env bash
# The ROS 2 PyPI wheels' CMake files carry the paths of the machine they were
# built on (/opt/python/cpXY-cpXY/..., the manylinux Python of the wheel's tag);
# point them at this Python's headers and this venv's site-packages so that
# colcon/CMake (rosidl_generate_interfaces) work in the venv.
# Checked with the Kilted and Jazzy wheels (both cp311 here).
set -euo pipefail
venv=${1:?usage: fix_ros_wheel_cmake_paths.sh VENV}
py="$venv/bin/python"
include_dir=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
site_dir=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
build_python='/opt/python/cp3[0-9]+-cp3[0-9]+'
# Idempotent: a second run finds nothing to rewrite (grep exits 1, which is fine).
{ grep -rlZE --include='*.cmake' "$build_python" "$venv/share" 2>/dev/null || true; } |
  xargs -0 -r sed -i -E \
    -e "s#$build_python/include/python3\.[0-9]+#$include_dir#g" \
    -e "s#$build_python/lib/python3\.[0-9]+/site-packages#$site_dir#g"
# Anything of the build machine left over would only fail later, inside CMake.
leftover=$({ grep -rlE --include='*.cmake' "$build_python" "$venv/share" 2>/dev/null || true; } | head -5)
if [ -n "$leftover" ]; then
  echo "fix_ros_wheel_cmake_paths.sh: build-machine paths left in:" >&2
  echo "$leftover" >&2
  exit 1
fi
