"""Demonstrations: recording episodes to rosbag2/MCAP bags and reading them back for training.

- `schema`: topics, message types, numpy <-> ROS message conversions (rosbags type store, no ROS import)
- `bag`: the bag writer (one finished MCAP file per episode) and the low-level reader
- `recording`: expert recording loop (headless, fast)
- `teleop`: keyboard teleoperation (pure key -> action core plus a terminal shell)
- `dataset`: episodes, normalisation statistics, train/validation split, multi-horizon BC targets
"""
