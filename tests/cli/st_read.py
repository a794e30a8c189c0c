"""Reads a safetensors file with the standard library only (struct + json), for the CLI tests.

Usage from a test: python3 st_read.py compare A B  -> exits 1 if hidden_states differ by more than 1e-5
relative per row, any topk_ids differ or any topk_weights differ by more than 1e-5; prints the worst
differences. Tensors are F32 or I32."""
import json
import math
import struct
import sys
from array import array


def read(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        code = {"F32": "f", "I32": "i", "I64": "q"}[info["dtype"]]
        values = array(code)
        values.frombytes(data[base + begin:base + end])
        out[name] = (info["shape"], values)
    return out


def write(path, tensors):
    """Writes {name: (dtype "F32" | "I32" | "I64", shape, values)} as a safetensors file."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, values) in sorted(tensors.items()):
        blob = array({"F32": "f", "I32": "i", "I64": "q"}[dtype], values).tobytes()
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def compare(a_path, b_path):
    a, b = read(a_path), read(b_path)
    if sorted(a) != sorted(b):
        print("tensor names differ:", sorted(a), sorted(b))
        return 1
    (rows, cols), ha = a["hidden_states"]
    _, hb = b["hidden_states"]
    worst = 0.0
    for r in range(rows):
        diff = sum((ha[r * cols + j] - hb[r * cols + j]) ** 2 for j in range(cols))
        norm = sum(hb[r * cols + j] ** 2 for j in range(cols))
        worst = max(worst, math.sqrt(diff) / max(math.sqrt(norm), 1e-30))
    ids_equal = all(a[n][1] == b[n][1] for n in a if n.startswith("topk_ids."))
    weights = [abs(x - y) for n in a if n.startswith("topk_weights.") for x, y in zip(a[n][1], b[n][1])]
    worst_w = max(weights, default=0.0)
    print(f"worst row rel L2 {worst:.3g}, topk ids {'equal' if ids_equal else 'DIFFER'}, worst weight diff {worst_w:.3g}")
    return 0 if worst <= 1e-5 and ids_equal and worst_w <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(compare(sys.argv[2], sys.argv[3]) if sys.argv[1] == "compare" else 2)
