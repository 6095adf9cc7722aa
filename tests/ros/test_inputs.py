"""rrl_ros.inputs: latest message per input, each with its staleness limit (no ROS)."""

from rrl_ros.inputs import LatestInputs

MS = 1_000_000


def test_missing_old_and_fresh_inputs():
    inputs = LatestInputs({"joint_states": 0.2, "image": 0.3}, {"joint_states": "/joint_states"})
    assert inputs.stale(["joint_states", "image"], 0) == {"joint_states": None, "image": None}
    inputs.put("joint_states", "q0", stamp_ns=1000 * MS, received_ns=1001 * MS)
    inputs.put("image", "img", stamp_ns=0, received_ns=1100 * MS)  # no stamp: the arrival time stands in
    assert inputs.stale(["joint_states", "image"], 1150 * MS) == {}
    assert inputs.stale(["joint_states", "image"], 1250 * MS) == {"joint_states": 0.25}
    assert inputs.stale(["joint_states"], 900 * MS) == {}  # a stamp from the future (clock skew) is age 0
    assert inputs.stale_ticks == {"joint_states": 2, "image": 1}
    assert inputs.newest_stamp_ns(["joint_states", "image"]) == 1100 * MS
    assert inputs.describe("joint_states", 0.25) == "/joint_states is 250 ms old (limit 200 ms)"
    assert inputs.describe("image", None) == "no message on image yet"
    inputs.put("joint_states", "q1", stamp_ns=1240 * MS, received_ns=1241 * MS)
    assert inputs.latest["joint_states"].msg == "q1" and inputs.latest["joint_states"].count == 2
