"""`rrl switch --node NAME --base waypoint|waypoint:VARIANT|replay:BAG_DIR|bc [--artifact DIR]`: swap a running
control node's base.

Calls the node's standard `SetParametersAtomically` service
(`<node>/set_parameters_atomically`) with `base_controller` and `base_artifact` together
(the plain `SetParameters` service would validate them one at a time); the node validates the change in its
set-parameters callback and applies it before its next tick, or rejects it with a
reason, which is printed (exit code 1). Talks over the ROS_DOMAIN_ID of the environment.

Before any ROS call, the request is checked with the node's own parser of the pair
(`policies.base_spec.parse_node_base`: the form, and that the artifact is a policy artifact
directory or an .onnx file, or for `replay:BAG_DIR` that the directory is a bag) plus the one rule the
node cannot apply: the node keeps `base_artifact` from the last bc base and ignores it under a waypoint
or replay base, so `--artifact` with either would be silently ignored there and is refused here. A
relative bag or artifact path is sent as an absolute one (the node's working directory may differ). These refusals exit with code 2, as `rrl eval`
does for a bad `--base`. Whether the artifact loads and fits the task, the residual and the camera
is the node's to say (exit code 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def base_kind(text: str) -> str:
    """`--base`: the node's `base_controller` values (waypoint, waypoint:VARIANT, replay:BAG_DIR with the bag's
    absolute path, bc)."""
    from policies.base_spec import BaseSpecError, is_replay, is_waypoint, parse_base

    if text == "bc":
        return text
    if not (is_waypoint(text) or is_replay(text)):
        raise argparse.ArgumentTypeError(f"expected waypoint, waypoint:VARIANT, replay:BAG_DIR or bc, got {text!r}")
    try:
        spec = parse_base(text)
    except BaseSpecError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return f"replay:{spec.path.resolve()}" if spec.is_replay else spec.text


def check_request(base: str, artifact: str | None) -> str | None:
    """Why the control node would refuse or ignore setting (base, artifact), as far as it shows here; else None."""
    from policies.base_spec import BaseSpecError, is_replay, is_waypoint, parse_node_base

    if (is_waypoint(base) or is_replay(base)) and artifact:
        kind = "replay" if is_replay(base) else base
        return (f"--artifact {artifact} is only for --base bc: a {kind} base loads no artifact, so the node "
                f"would ignore it (leave --artifact out, or use --base bc)")
    if base == "bc" and not artifact:
        return "--base bc needs --artifact DIR (a policy artifact directory or a plain .onnx file)"
    try:
        parse_node_base(base, artifact or "")
    except BaseSpecError as e:
        return str(e)
    return None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", default="/control", help="control node name, e.g. /control or /ns/control")
    p.add_argument("--base", required=True, type=base_kind, metavar="{waypoint,waypoint:VARIANT,replay:BAG_DIR,bc}",
                   help="new base controller (waypoint:VARIANT: a variant of the task's expert, e.g. no_retry; "
                        "replay:BAG_DIR: a recorded demonstration bag, replayed from the episode's seed)")
    p.add_argument("--artifact", default=None, help="bc base: policy artifact directory (or plain ONNX file)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the node's service")


def switch_base(node: str, base: str, artifact: str | None, timeout_s: float = 10.0) -> tuple[bool, str]:
    """Set `base_controller` (+ `base_artifact`) on `node`; returns (accepted, reason)."""
    import rclpy
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParametersAtomically

    own_context = not rclpy.ok()
    if own_context:
        rclpy.init()
    client_node = rclpy.create_node("rrl_switch")
    try:
        service = node.rstrip("/") + "/set_parameters_atomically"
        service = service if service.startswith("/") else "/" + service
        client = client_node.create_client(SetParametersAtomically, service)
        if not client.wait_for_service(timeout_sec=timeout_s):
            return False, f"service {service} not available after {timeout_s:g} s (is the stack running, same ROS_DOMAIN_ID?)"
        string = lambda name, value: Parameter(  # noqa: E731
            name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value))
        request = SetParametersAtomically.Request()
        request.parameters = [string("base_controller", base)]
        if artifact is not None:
            request.parameters.append(string("base_artifact", artifact))
        future = client.call_async(request)
        rclpy.spin_until_future_complete(client_node, future, timeout_sec=timeout_s)
        if not future.done():
            return False, f"no answer from {service} within {timeout_s:g} s"
        result = future.result().result
        if not result.successful:
            return False, result.reason or "rejected without a reason"
        return True, "ok"
    finally:
        client_node.destroy_node()
        if own_context:
            rclpy.try_shutdown()


def run(args: argparse.Namespace) -> int:
    problem = check_request(args.base, args.artifact)
    if problem:
        print(f"rrl switch: {problem}", file=sys.stderr)
        return 2
    artifact = str(Path(args.artifact).resolve()) if args.artifact else ""
    ok, reason = switch_base(args.node, args.base, artifact, args.timeout)
    if ok:
        print(f"{args.node}: base controller -> {args.base}{' ' + artifact if artifact else ''}")
        return 0
    print(f"rrl switch: {args.node} rejected the change: {reason}", file=sys.stderr)
    return 1
