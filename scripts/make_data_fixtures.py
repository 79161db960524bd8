"""Make the training-data fixtures: a Megatron indexed dataset with planted memorized
sequences (whole and sharded), and memorized-evals-style parquet tables.

What it writes (deterministic: fixed seed; a few KB each):
  tests/fixtures/megatron/whole/document.idx, document.bin
      24 sequences of 40-180 uint16 tokens (dtype code 8, as in Pythia's Pile) in exactly
      the format GPT-NeoX's MMapIndexedDatasetBuilder writes: magic b"MMIDIDX\\x00\\x00",
      u64 version 1, u8 dtype code, u64 sequence count, u64 document count, int32 sizes,
      int64 byte pointers, int64 document index (one document per sequence, [0, 1, ..., 24],
      as the builder's end_document after every add_item leaves it).
  tests/fixtures/megatron/sharded/document.idx, document-0000{0,1,2}-of-00002.bin
      the same index and the same .bin bytes cut into 3 shards the way Pythia's published
      shards are cut: consecutive byte ranges, all the size of shard 0 but a shorter last one
      ("-of-00002" names the last index). The shard size is odd and the first boundary falls
      inside the first window of a planted sequence, so a token (2 bytes) and a memorized
      window straddle two shards.
  tests/fixtures/megatron/planted.json
      where the memorized rows were planted: [sequence, token offset, row of
      memorized_data/tiny-pythia.npy], for the default windows (each sequence's first 64
      tokens) and for --stride 48 (which also finds a row planted at offset 48; a stride of 16 would also
      keep the window at 32, whose 16 planted prefix tokens the 8-block model recognizes).
  tests/fixtures/memorized-evals/evals.parquet, evals.npy
      the first 64 tokens of every fixture sequence that has 64, in the shape of EleutherAI's
      pythia-memorized-evals splits (columns `index`: int64 sequence index, `tokens`:
      list<int64>; snappy, as the hub's files), and the same rows as a uint16 .npy.
  tests/fixtures/memorized-evals/no_tokens.parquet   columns `index` and `text` only
  tests/fixtures/memorized-evals/ragged.parquet      one `tokens` row a token short

Every token not planted is uniform in [8, 704) (within the tiny model's vocabulary): the tiny
model reproduces no 32 of those, so extract keeps exactly the planted windows.

Run from the repo root:  /work/venv/bin/python scripts/make_data_fixtures.py
Versions used: python 3.11.7, numpy 2.4.6, pyarrow 26.0.1.
"""
import json
import os
import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MEGATRON = os.path.join(ROOT, "tests", "fixtures", "megatron")
EVALS = os.path.join(ROOT, "tests", "fixtures", "memorized-evals")
WINDOW = 64  # prefix 32 + suffix 32, the rows of memorized_data/tiny-pythia.npy
STRIDE = 48
NUM_SEQUENCES = 24
DTYPE = np.uint16
DTYPE_CODE = 8  # GPT-NeoX: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float, 7 double, 8 uint16

# sequence -> (token offset, memorized row)
PLANTED_AT_START = {2: 0, 9: 5, 15: 17}
PLANTED_AT_48 = {20: 40}
# The sequence whose first window the first shard boundary cuts.
STRADDLING = 9


def write_index(path, sizes, doc_idx):
    """GPT-NeoX's MMapIndexedDataset.Index.writer, step by step."""
    itemsize = np.dtype(DTYPE).itemsize
    pointers = np.zeros(len(sizes), dtype=np.int64)
    address = 0
    for i, size in enumerate(sizes):
        pointers[i] = address
        address += size * itemsize
    with open(path, "wb") as f:
        f.write(b"MMIDIDX\x00\x00")
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", DTYPE_CODE))
        f.write(struct.pack("<Q", len(sizes)))
        f.write(struct.pack("<Q", len(doc_idx)))
        f.write(np.array(sizes, dtype=np.int32).tobytes(order="C"))
        f.write(pointers.tobytes(order="C"))
        f.write(np.array(doc_idx, dtype=np.int64).tobytes(order="C"))
    return pointers


def main():
    rng = np.random.default_rng(15)
    memorized = np.load(os.path.join(ROOT, "memorized_data", "tiny-pythia.npy"))
    assert memorized.shape[1] == WINDOW

    sizes = [int(n) for n in rng.integers(40, 181, NUM_SEQUENCES)]
    # Planted sequences must hold their window; a few others stay shorter than one window.
    for seq in PLANTED_AT_START:
        sizes[seq] = max(sizes[seq], WINDOW + 20)
    for seq in PLANTED_AT_48:
        sizes[seq] = max(sizes[seq], 48 + WINDOW + 10)
    sizes[4], sizes[11] = 40, 63
    sequences = [rng.integers(8, 704, n).astype(DTYPE) for n in sizes]
    for seq, row in PLANTED_AT_START.items():
        sequences[seq][:WINDOW] = memorized[row]
    for seq, row in PLANTED_AT_48.items():
        sequences[seq][48 : 48 + WINDOW] = memorized[row]

    data = b"".join(s.tobytes() for s in sequences)
    doc_idx = list(range(NUM_SEQUENCES + 1))
    for sub in ("whole", "sharded"):
        os.makedirs(os.path.join(MEGATRON, sub), exist_ok=True)
        pointers = write_index(os.path.join(MEGATRON, sub, "document.idx"), sizes, doc_idx)
    with open(os.path.join(MEGATRON, "whole", "document.bin"), "wb") as f:
        f.write(data)

    # 20 tokens (40 bytes) plus one byte into the straddling sequence's first window.
    shard_size = int(pointers[STRADDLING]) + 41
    assert shard_size % 2 == 1 and 2 * shard_size < len(data)
    pieces = [data[:shard_size], data[shard_size : 2 * shard_size], data[2 * shard_size :]]
    assert 0 < len(pieces[2]) < shard_size
    for i, piece in enumerate(pieces):
        name = f"document-{i:05d}-of-{len(pieces) - 1:05d}.bin"
        with open(os.path.join(MEGATRON, "sharded", name), "wb") as f:
            f.write(piece)

    planted = {
        "prefix_len": 32,
        "suffix_len": 32,
        "stride": STRIDE,
        "straddling_sequence": STRADDLING,
        "default": [[s, 0, r] for s, r in sorted(PLANTED_AT_START.items())],
        "strided": sorted(
            [[s, 0, r] for s, r in PLANTED_AT_START.items()]
            + [[s, 48, r] for s, r in PLANTED_AT_48.items()]
        ),
    }
    assert all(o % STRIDE == 0 for _, o, _ in planted["strided"])
    with open(os.path.join(MEGATRON, "planted.json"), "w") as f:
        json.dump(planted, f)
        f.write("\n")

    os.makedirs(EVALS, exist_ok=True)
    index = [i for i, n in enumerate(sizes) if n >= WINDOW]
    rows = np.stack([sequences[i][:WINDOW] for i in index])
    np.save(os.path.join(EVALS, "evals.npy"), rows)
    table = pa.table(
        {
            "index": pa.array(index, type=pa.int64()),
            "tokens": pa.array([r.astype(np.int64).tolist() for r in rows], type=pa.list_(pa.int64())),
        }
    )
    pq.write_table(table, os.path.join(EVALS, "evals.parquet"))
    no_tokens = pa.table({"index": pa.array(index[:4], type=pa.int64()), "text": ["a", "b", "c", "d"]})
    pq.write_table(no_tokens, os.path.join(EVALS, "no_tokens.parquet"))
    ragged = [r.astype(np.int64).tolist() for r in rows[:6]]
    ragged[3] = ragged[3][:-1]
    pq.write_table(
        pa.table({"index": pa.array(index[:6], type=pa.int64()), "tokens": ragged}),
        os.path.join(EVALS, "ragged.parquet"),
    )
    print(f"{NUM_SEQUENCES} sequences, {len(data)} bytes, shards of {shard_size}; {len(index)} eval rows")


if __name__ == "__main__":
    main()
