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

# The main job (rrl/commands/demo.py): through the UR5 ROS 2 stack (sim_bridge + control node, loopback DDS in a
# private domain), the shipped BC base alone and with its residual on the same 20 held-out seeds (lockstep), one
# realtime 10 Hz episode (SCHED_FIFO where allowed, else the nodes warn and run on) and one live base swap
# (waypoint -> bc); prints the table, writes out/demo_report.json, out/demo.png and out/demo.mp4.
demo: $(STAMP)
	ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(VENV)/bin/rrl demo --out out

test: $(STAMP)
	$(PY) -m pytest -q --durations=15 tests
