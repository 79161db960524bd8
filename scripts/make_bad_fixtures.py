#!/usr/bin/env python3
"""Make the hostile and broken ``pytorch_model.bin`` files of tests/fixtures/bad/.

Each is a few hundred bytes. tests/hardening.rs puts one beside a config.json and checks that
``llm-mem memorize`` refuses it with one line and exit code 2, before candle's pickle reader
runs anything or allocates what the file declares.

* ``global_os_system.bin``  torch.save layout (zip, ``archive/data.pkl``) whose pickle is a
  GLOBAL + REDUCE of ``posix.system`` (what ``os.system`` pickles as on Linux).
* ``stack_global_eval.bin`` the same with a protocol-4 STACK_GLOBAL of ``builtins.eval``.
* ``inst_os_system.bin``    the protocol-0 INST opcode naming ``os.system``.
* ``not_a_zip.bin``         plain text.
* ``legacy_format.bin``     ``torch.save(..., _use_new_zipfile_serialization=False)``: the pre-1.6
  format, which is not a zip archive.
* ``truncated.bin``         the first half of a real torch.save file.
* ``short_record.bin``      only allowed callables, but ``_rebuild_tensor_v2`` gets 2 arguments
  instead of 6 (candle's reader indexes them unchecked).
* ``huge_tensor.bin``       a well-formed record declaring a 2^20 x 2^20 float tensor (4 TiB)
  backed by a 16-byte storage.

Run from the repository root (about 5 s, mostly importing torch)::

    /work/venv/bin/python scripts/make_bad_fixtures.py

Deterministic: zip timestamps are fixed, so rerunning rewrites the same bytes.
Last run with: python 3.11.7, torch 2.15.0.
"""

import collections
import io
import os
import pickle
import zipfile

import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "bad")
STAMP = (2020, 1, 1, 0, 0, 0)


def torch_zip(pkl: bytes, storages=None) -> bytes:
    """A zip laid out like torch.save's: archive/data.pkl, archive/data/<key>, version."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in [("archive/data.pkl", pkl), ("archive/version", b"3\n"),
                           ("archive/byteorder", b"little")] + list((storages or {}).items()):
            z.writestr(zipfile.ZipInfo(name, STAMP), data)
    return buf.getvalue()


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class EvalEvil:
    def __reduce__(self):
        return (eval, ("1+1",))


class Storage:
    """Stands for a torch storage; pickled as torch.save does, through persistent_id."""

    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class Tensor:
    """Pickles as torch._utils._rebuild_tensor_v2(*args)."""

    def __init__(self, *args):
        self.args = args

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def torch_like_pickle(state) -> bytes:
    buf = io.BytesIO()
    TorchLikePickler(buf, protocol=2).dump(state)
    return buf.getvalue()


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes")


def main():
    os.makedirs(OUT, exist_ok=True)
    write("global_os_system.bin", torch_zip(pickle.dumps(Evil(), protocol=2)))
    write("stack_global_eval.bin", torch_zip(pickle.dumps(EvalEvil(), protocol=4)))
    # INST: MARK, the argument, then `i` with module and name lines, STOP.
    write("inst_os_system.bin", torch_zip(b"(S'echo pwned'\nios\nsystem\n."))
    write("not_a_zip.bin", b"this is not a PyTorch checkpoint\n")

    small = collections.OrderedDict(w=torch.arange(4, dtype=torch.float32))
    buf = io.BytesIO()
    torch.save(small, buf, _use_new_zipfile_serialization=False)
    write("legacy_format.bin", buf.getvalue())
    buf = io.BytesIO()
    torch.save(small, buf)
    whole = buf.getvalue()
    write("truncated.bin", whole[: len(whole) // 2])

    storage = Storage("0", 4)
    data = {"archive/data/0": bytes(16)}
    short = collections.OrderedDict([("transformer.wte.weight", Tensor(storage, 0))])
    write("short_record.bin", torch_zip(torch_like_pickle(short), data))
    huge = collections.OrderedDict(
        [("transformer.wte.weight", Tensor(storage, 0, (1 << 20, 1 << 20), (1 << 20, 1), False, collections.OrderedDict()))]
    )
    write("huge_tensor.bin", torch_zip(torch_like_pickle(huge), data))


if __name__ == "__main__":
    main()
