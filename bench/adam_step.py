"""One Adam step on the learners' networks: torch's default per-tensor loop, `foreach` and `fused` (what
`training.device.adam` uses), in ms, with the largest difference of the parameters after the timed steps.

Networks: the DMPO image encoder (`ImageEncoder`, the ResNet of the image learners, 2.8 M parameters) and an
MLP of the size of a depth residual's critic (268 + 4 inputs, 3 x 512, 101 atoms). One torch thread, as the
training runs use. Prints one JSON object (the timings, the machine).

    .venv/bin/python bench/adam_step.py
"""

from __future__ import annotations

import json
import time

import torch
from machine_info import machine

STEPS = 30


def timed_steps(make_params, **adam_kwargs) -> tuple[float, list[torch.Tensor]]:
    """ms per `torch.optim.Adam(**adam_kwargs)` step over STEPS steps (after 3 warm-up ones), and the parameters."""
    torch.manual_seed(0)
    params = make_params()
    for p in params:
        p.grad = torch.randn_like(p)
    opt = torch.optim.Adam(params, lr=1e-3, **adam_kwargs)
    for _ in range(3):
        opt.step()
    start = time.perf_counter()
    for _ in range(STEPS):
        opt.step()
    return (time.perf_counter() - start) / STEPS * 1e3, params


def main() -> int:
    from training.dmpo.networks import ImageEncoder

    torch.set_num_threads(1)
    networks = {
        "image_encoder": lambda: list(ImageEncoder(1, (1, 8, 8)).parameters()),
        "critic_mlp": lambda: list(torch.nn.Sequential(
            torch.nn.Linear(268 + 4, 512), torch.nn.ELU(), torch.nn.Linear(512, 512), torch.nn.ELU(),
            torch.nn.Linear(512, 512), torch.nn.ELU(), torch.nn.Linear(512, 101)).parameters()),
    }
    results = {}
    for name, make in networks.items():
        loop_ms, reference = timed_steps(make)
        row = {"parameters": sum(p.numel() for p in reference), "loop_ms": round(loop_ms, 2)}
        for variant in ("foreach", "fused"):
            ms, params = timed_steps(make, **{variant: True})
            row[f"{variant}_ms"] = round(ms, 2)
            row[f"{variant}_max_abs_diff"] = max(float((a - b).detach().abs().max()) for a, b in zip(params, reference))
        results[name] = row
    print(json.dumps({"steps": STEPS, "torch_threads": 1, "networks": results, "machine": machine("torch")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
