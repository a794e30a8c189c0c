#!/usr/bin/python3
"""Writes the seed corpus of the safetensors header fuzzer (tests/fuzz/corpus/), by hand with struct and
json: small valid files (every dtype, scalars, empty tensors, metadata, padding) and small invalid ones
(one defect each). The unit test SafetensorsCorpus replays them; the fuzzer mutates them.

    /usr/bin/python3 tests/fuzz/make_corpus.py
"""
import json
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def raw(header_text, data=b"", header_len=None):
    text = header_text.encode() if isinstance(header_text, str) else header_text
    n = len(text) if header_len is None else header_len
    return struct.pack("<Q", n) + text + data


def st(tensors, metadata=None, pad=True, data=None):
    """tensors: list of (name, dtype, shape, nbytes), packed back to back in order."""
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, nbytes in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header)
    if pad:
        text += " " * ((8 - len(text) % 8) % 8)
    return raw(text, bytes(i % 256 for i in range(offset)) if data is None else data)


def seeds():
    every = [("b", "BOOL", [2], 2), ("u", "U8", [3], 3), ("i8", "I8", [1], 1), ("i16", "I16", [2], 4),
             ("h", "F16", [2, 2], 8), ("bf", "BF16", [3], 6), ("i", "I32", [1, 1], 4), ("f", "F32", [2], 8),
             ("l", "I64", [1], 8), ("d", "F64", [1], 8)]
    yield "valid_empty", raw("{}")
    yield "valid_padded_metadata", st([], {"format": "pt"})
    yield "valid_every_dtype", st(every, {"a": "b"})
    yield "valid_scalar_and_empty", st([("s", "F32", [], 4), ("e", "BF16", [0, 3], 0), ("z", "I64", [4, 0], 0)], pad=False)
    yield "valid_expert_layout", st([("model.layers.0.mlp.experts.%d.w1.weight" % e, "BF16", [4, 2], 16) for e in range(3)]
                                    + [("model.layers.0.mlp.gate.weight", "F32", [3, 2], 24)])
    yield "bad_truncated", st([("f", "F32", [4], 16)])[:-3]
    yield "bad_header_len_past_end", raw("{}", header_len=64)
    yield "bad_header_too_large", raw("{}", header_len=200_000_000)
    yield "bad_json", raw('{"f":{"dtype":"F32",')
    yield "bad_not_object", raw("[1,2,3]")
    yield "bad_dtype", st([("q", "F8_E4M3", [2], 2)])
    yield "bad_missing_shape", raw('{"f":{"dtype":"F32","data_offsets":[0,4]}}', b"\0" * 4)
    yield "bad_negative_dim", raw('{"f":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}')
    yield "bad_overflow_shape", raw('{"f":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}}')
    yield "bad_overlap", raw('{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
                             '"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}', b"\1" * 6)
    yield "bad_hole", raw('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
                          '"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}', b"\1" * 6)
    yield "bad_extra_bytes", st([("f", "F32", [1], 4)], data=b"\0" * 9)
    yield "bad_duplicate_name", raw('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                    '"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\1\2")
    yield "bad_metadata", raw('{"__metadata__":{"k":1}}')
    yield "bad_nested", raw('{"f":{"dtype":"F32","shape":[[[1]]],"data_offsets":[0,4]}}', b"\0" * 4)
    # For the fuzzer's second reading of each input (header up to the first NUL, data after it).
    unpadded = st(every, {"a": "b"}, pad=False)
    n = struct.unpack("<Q", unpadded[:8])[0]
    yield "framed_every_dtype", unpadded[8:8 + n] + b"\0" + unpadded[8 + n:]
    yield "framed_scalar", b'{"s":{"dtype":"BF16","shape":[],"data_offsets":[0,2]}}\0' + b"\x80\x3f"
    yield "bad_mismatch", raw('{"f":{"dtype":"F32","shape":[8,16],"data_offsets":[0,100]}}', b"\0" * 100)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
