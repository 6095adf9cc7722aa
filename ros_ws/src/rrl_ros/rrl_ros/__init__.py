"""rrl ROS 2 nodes: thin shells over the pure packages (sim_bridge, controllers, policies).

- `conversions`: the one module that turns numpy/`Layout` data into messages and back
- `metrics`: loop period, jitter, observation-to-command latency, missed deadlines
- `sim_core` / `sim_bridge_node`: one simulated task, realtime or lockstep clock
- `control_node`: runs `policies.runtime.ComposedPolicy` (base controller + residual + safety layer)
"""
