"""Offline training: demo datasets, BC, DMPO, REQ, replay, evaluation, export. Never imports ROS."""
