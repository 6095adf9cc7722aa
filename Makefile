# The two set-up commands of the README: `make demo` (the main job) and `make test`.
# Each creates .venv if missing and installs everything pinned before it runs.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench

install: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml ros_ws/src/rrl_ros/setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# MuJoCo offscreen rendering (Adroit RGB) needs EGL (libegl1), a GL library for PyOpenGL (libopengl0) and,
	@# without a GPU, Mesa's software driver llvmpipe (swrast_dri.so in libgl1-mesa-dri; libegl1 does not pull it
	@# in): install what is missing when we are root.
	@if ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1' || ! ldconfig -p 2>/dev/null | grep -q -e 'libOpenGL.so.0' -e 'libGL.so.1' \
	    || ! ls /usr/lib/*/dri/swrast_dri.so /usr/lib/dri/swrast_dri.so 2>/dev/null | grep -q .; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq libegl1 libopengl0 libgl1-mesa-dri; \
	  else echo "note: EGL/Mesa libraries missing and not root: Adroit image modes will be unavailable" \
	    "(apt-get install libegl1 libopengl0 libgl1-mesa-dri)"; fi; fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip install --quiet --no-deps -e ros_ws/src/rrl_ros
	touch $(STAMP)

# The main job: the UR5 ROS 2 stack (sim_bridge + control node: pick, waypoint base, realtime 10 Hz,
# 3 episodes) over loopback DDS; prints per-episode success and the control-loop statistics.
# rt_priority: the nodes run under SCHED_FIFO where allowed (else they warn and run on).
demo: $(STAMP)
	ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(VENV)/bin/rrl launch launch/ur5.launch.yaml \
		task:=ur5_pick base:=waypoint clock_mode:=realtime episodes:=3 rt_priority:=20 --report out/demo_report.json

test: $(STAMP)
	$(PY) -m pytest -q tests
