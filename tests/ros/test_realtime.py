"""rrl_ros.realtime: SCHED_FIFO for a node process (checked in a child process, never on pytest itself)."""

import subprocess
import sys

import pytest

from rrl_ros.realtime import set_fifo_priority

CHILD = """
import os, threading, time
from rrl_ros.realtime import set_fifo_priority
t = threading.Thread(target=time.sleep, args=(1,)); t.start()
err = set_fifo_priority(7)
policies = {os.sched_getscheduler(int(tid)) for tid in os.listdir('/proc/self/task')}
print('ERR ' + err if err else ('FIFO' if policies == {os.SCHED_FIFO} else f'MIXED {policies}'))
"""


@pytest.mark.parametrize("bad", [0, 100, -3])
def test_priority_range_is_checked(bad):
    assert "must be in 1..99" in set_fifo_priority(bad)


def test_every_thread_of_the_process_goes_fifo_or_the_reason_is_given():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=30).stdout.strip()
    assert out == "FIFO" or out.startswith("ERR cannot set SCHED_FIFO priority 7"), out
