#!/usr/bin/python3
"""A token stream whose routing drifts: blocks of two byte sources alternating, as little-endian uint16 byte ids
(a byte-level model's tokens, `epmoe eval --tokens FILE --token-dtype uint16`).

    make_drift.py OUT.bin --a FILE... --b FILE... [--block 4096] [--blocks 24]

Source a is the tail of its files (the end of a corpus `epmoe train` held out for validation), source b the
start of its own; the stream is a0 b0 a1 b1 ... of --block bytes each, --blocks of each."""
import argparse
import array


def main():
    p = argparse.ArgumentParser(description="two byte sources in alternating blocks, as uint16 ids")
    p.add_argument("out")
    p.add_argument("--a", nargs="+", required=True)
    p.add_argument("--b", nargs="+", required=True)
    p.add_argument("--block", type=int, default=4096)
    p.add_argument("--blocks", type=int, default=24)
    a = p.parse_args()
    n = a.block * a.blocks
    src_a = b"".join(open(f, "rb").read() for f in a.a)[-n:]
    src_b = b"".join(open(f, "rb").read() for f in a.b)[:n]
    if len(src_a) < n or len(src_b) < n:
        raise SystemExit(f"make_drift.py: error: the sources hold {len(src_a)} and {len(src_b)} bytes, {n} needed")
    stream = b"".join(src_a[i:i + a.block] + src_b[i:i + a.block] for i in range(0, n, a.block))
    array.array("H", list(stream)).tofile(open(a.out, "wb"))


if __name__ == "__main__":
    main()
