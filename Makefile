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
	@# MuJoCo offscreen rendering (Adroit RGB) needs EGL: install libegl1 when missing and we are root.
	@if ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1'; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq libegl1; \
	  else echo "note: libEGL.so.1 missing and not root: Adroit image modes will be unavailable"; fi; fi
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
