"""Checks that a simulated run routed exactly as a real one: python3 compare_routing.py SIM_DIR REAL_DIR.

Compares the dumped topk_ids.<l> (equal) and topk_weights.<l> (within 1e-6) of the last step (dump.safetensors
in each directory), and every metrics.jsonl line's per-layer expert_load histogram (equal). hidden_states are not
compared: simulated experts output zeros. Exits 1 on any difference."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli"))
from st_read import read  # noqa: E402


def loads(path):
    with open(os.path.join(path, "metrics.jsonl")) as f:
        return [[layer["expert_load"] for layer in json.loads(line)["layers"]] for line in f if line.strip()]


def main(sim_dir, real_dir):
    sim, real = read(os.path.join(sim_dir, "dump.safetensors")), read(os.path.join(real_dir, "dump.safetensors"))
    bad = 0
    names = sorted(n for n in real if n.startswith("topk_"))
    if not names or sorted(n for n in sim if n.startswith("topk_")) != names:
        print(f"tensor names differ: sim {sorted(sim)} real {sorted(real)}")
        return 1
    for name in names:
        (s_shape, s), (r_shape, r) = sim[name], real[name]
        if s_shape != r_shape:
            print(f"{name}: shape {s_shape} vs {r_shape}")
            bad += 1
            continue
        tol = 0 if name.startswith("topk_ids") else 1e-6
        diff = [i for i in range(len(r)) if abs(s[i] - r[i]) > tol]
        print(f"{name} {r_shape}: {len(diff)} of {len(r)} differ")
        bad += len(diff) > 0
    s_loads, r_loads = loads(sim_dir), loads(real_dir)
    print(f"expert_load: {len(r_loads)} steps, equal: {s_loads == r_loads}; first step, layer 0: {r_loads[0][0]}")
    bad += s_loads != r_loads or not r_loads
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
