"""Embedding files are untrusted input: load_embeddings refuses anything that does not
match its own fingerprint, and save_embeddings writes atomically (mlx_jina/store.py).

Run: python -m pytest tests/test_store_untrusted.py -q
"""

import json
import os
import struct
import threading
from dataclasses import asdict, replace

import numpy as np
import pytest
from safetensors.numpy import save_file

from mlx_jina import Fingerprint, load_embeddings, save_embeddings, semantic_search
from mlx_jina.retrieval.store import FORMAT

FP = Fingerprint(model="jinaai/jina-embeddings-v5-text-small", revision=None, task="retrieval",
                 prompt="Document: ", dims=64, precision="float32", version="0.1.0")


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write(path, tensors: dict, fingerprint=FP, **metadata):
    """A safetensors file with any tensors and fingerprint text, bypassing save_embeddings."""
    meta = {"format": FORMAT, **metadata}
    if isinstance(fingerprint, Fingerprint):
        meta["fingerprint"] = json.dumps(asdict(fingerprint))
    elif isinstance(fingerprint, str):
        meta["fingerprint"] = fingerprint
    elif fingerprint is not None:  # None: no fingerprint key at all
        meta["fingerprint"] = json.dumps(fingerprint)
    save_file(tensors, str(path), metadata=meta)
    return path


def split(path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def write_raw(path, header: dict | bytes, data: bytes = b""):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def edit_header(path, edit) -> None:
    """Rewrite a file's header with `edit(header)`, keeping its data bytes."""
    header, data = split(path)
    edit(header)
    write_raw(path, header, data)


# --- the tensor must be what the fingerprint says ---------------------------------------


def test_header_shape_that_disagrees_with_the_fingerprint_is_refused(tmp_path):
    """A header saying (8, 32) over (4, 64) data must not load: semantic_search would then
    return corpus_id 4 of a 4-row corpus."""
    path = save_embeddings(tmp_path / "d.safetensors", unit_rows(4, 64), FP)
    edit_header(path, lambda h: h["embeddings"].update(shape=[8, 32]))
    with pytest.raises(ValueError) as err:
        load_embeddings(path)
    message = str(err.value)
    assert str(path) in message and "(n, 64)" in message and "(8, 32)" in message


def test_fingerprint_that_disagrees_with_the_tensor_is_refused_even_when_expected(tmp_path):
    """An int8 / 32-dim fingerprint over float32 / 64-dim data must not pass expected=."""
    fp = replace(FP, precision="int8", dims=32)
    path = write(tmp_path / "d.safetensors", {"embeddings": unit_rows(4, 64)}, fp)
    with pytest.raises(ValueError, match=r"int8 vectors of 32 dimensions.*float32 \(4, 64\)"):
        load_embeddings(path, fp)


@pytest.mark.parametrize("precision, dims, array", [
    ("float16", 64, unit_rows(3, 64)),                               # float32 data
    ("binary", 64, np.zeros((3, 8), np.uint8)),                      # ubinary data
    ("ubinary", 64, np.zeros((3, 64), np.uint8)),                    # not bit-packed
    ("int8", 64, np.zeros((3, 2, 32), np.int8)),                     # 3-D
    ("float32", 64, np.zeros((64,), np.float32)),                    # 1-D
])
def test_every_precision_checks_dtype_and_width(tmp_path, precision, dims, array):
    path = write(tmp_path / "d.safetensors", {"embeddings": array},
                 replace(FP, precision=precision, dims=dims))
    with pytest.raises(ValueError, match=str(tmp_path)):
        load_embeddings(path)


def test_binary_padding_bits_must_be_zero(tmp_path):
    """36 dimensions take 5 bytes; set padding bits would count in every Hamming distance."""
    fp = replace(FP, precision="ubinary", dims=36)
    packed = np.packbits(unit_rows(3, 36) > 0, axis=-1)
    packed[1, -1] |= 0x01
    path = write(tmp_path / "d.safetensors", {"embeddings": packed}, fp)
    with pytest.raises(ValueError, match="1 row.*padding"):
        load_embeddings(path)
    with pytest.raises(ValueError, match="1 row.*padding"):
        save_embeddings(tmp_path / "e.safetensors", packed, fp)


# --- a malformed fingerprint is one clear ValueError ------------------------------------

GOOD = asdict(FP)
BAD_FINGERPRINTS = {
    "invalid JSON": ("{not json", "fingerprint"),
    "a JSON list": ("[1, 2]", "fingerprint"),
    "JSON null": ("null", "fingerprint"),
    "JSON nested too deep": ("[" * 100_000 + "]" * 100_000, "fingerprint"),
    "no dims": ({k: v for k, v in GOOD.items() if k != "dims"}, "dims"),
    "no model or task": ({k: v for k, v in GOOD.items() if k not in ("model", "task")},
                         "model, task"),
    "dims a string": ({**GOOD, "dims": "64"}, "dims"),
    "dims a float": ({**GOOD, "dims": 64.0}, "dims"),
    "dims a bool": ({**GOOD, "dims": True}, "dims"),
    "dims negative": ({**GOOD, "dims": -64}, "dims"),
    "dims zero": ({**GOOD, "dims": 0}, "dims"),
    "precision unknown": ({**GOOD, "precision": "int4"}, "precision"),
    "precision a number": ({**GOOD, "precision": 8}, "precision"),
    "task a number": ({**GOOD, "task": 5}, "task"),
    "prompt null": ({**GOOD, "prompt": None}, "prompt"),
    "prompt a list": ({**GOOD, "prompt": ["Document: "]}, "prompt"),
    "model null": ({**GOOD, "model": None}, "model"),
    "revision a number": ({**GOOD, "revision": 3}, "revision"),
    "version a number": ({**GOOD, "version": 1}, "version"),
}


@pytest.mark.parametrize("case", BAD_FINGERPRINTS)
def test_malformed_fingerprint_is_one_clear_value_error(tmp_path, case):
    """Each is one ValueError, never a KeyError / TypeError / AttributeError, nor a load."""
    text, field = BAD_FINGERPRINTS[case]
    path = write(tmp_path / "d.safetensors", {"embeddings": unit_rows(2, 64)}, text)
    for expected in (None, FP):
        with pytest.raises(ValueError) as err:
            load_embeddings(path, expected)
        assert str(path) in str(err.value) and field in str(err.value)


def test_missing_fingerprint_key_is_a_value_error(tmp_path):
    path = write(tmp_path / "d.safetensors", {"embeddings": unit_rows(2, 64)}, None)
    with pytest.raises(ValueError, match="no fingerprint"):
        load_embeddings(path)


def test_unknown_fingerprint_fields_are_ignored(tmp_path):
    """A newer release may record more; this one still reads the file."""
    path = write(tmp_path / "d.safetensors", {"embeddings": unit_rows(2, 64)},
                 {**GOOD, "pooling": "last"})
    assert load_embeddings(path, FP).fingerprint == FP


@pytest.mark.parametrize("field, value", [("precision", "int4"), ("dims", "64"),
                                          ("dims", 0), ("task", 5)])
def test_save_refuses_a_malformed_fingerprint(tmp_path, field, value):
    """A fingerprint that load would refuse is never written."""
    with pytest.raises(ValueError, match=field):
        save_embeddings(tmp_path / "d.safetensors", unit_rows(2, 64), replace(FP, **{field: value}))
    assert not (tmp_path / "d.safetensors").exists()


# --- other tensors ----------------------------------------------------------------------

INT8 = replace(FP, precision="int8")
CODES = np.zeros((3, 64), np.int8)
RANGES = np.stack([np.full(64, -0.5), np.full(64, 0.5)]).astype(np.float32)


@pytest.mark.parametrize("ranges, problem", [
    (RANGES[:, :32], r"float32 \(2, 32\); they must be float32 \(2, 64\)"),
    (RANGES.T.copy(), r"float32 \(64, 2\); they must"),
    (RANGES.reshape(-1), r"float32 \(128,\); they must"),
    (RANGES.astype(np.float64), "dtype 'F64'"),
    (RANGES.astype(np.float16), "float16"),
    (np.where(np.arange(64) == 3, np.nan, RANGES).astype(np.float32), "NaN or inf"),
    (np.where(np.arange(64) == 3, np.inf, RANGES).astype(np.float32), "NaN or inf"),
    (RANGES[::-1].copy(), "minimum above its maximum"),
])
def test_bad_ranges_are_refused(tmp_path, ranges, problem):
    path = write(tmp_path / "d.safetensors", {"embeddings": CODES, "ranges": ranges}, INT8)
    with pytest.raises(ValueError, match=problem):
        load_embeddings(path)


@pytest.mark.parametrize("ranges, problem", [
    (RANGES.T, r"shape \(64, 2\)"),  # was silently reshaped into nonsense
    (RANGES.reshape(-1), r"shape \(128,\)"),
    (np.full((2, 64), np.nan), "NaN or inf"),
    (RANGES[::-1], "minimum above its maximum"),
])
def test_save_refuses_bad_ranges(tmp_path, ranges, problem):
    with pytest.raises(ValueError, match=problem):
        save_embeddings(tmp_path / "d.safetensors", CODES, INT8, ranges=ranges)


@pytest.mark.parametrize("precision, codes", [("float32", unit_rows(3, 64)),
                                              ("binary", np.zeros((3, 8), np.int8))])
def test_ranges_for_a_float_or_binary_file_are_refused(tmp_path, precision, codes):
    path = write(tmp_path / "d.safetensors", {"embeddings": codes, "ranges": RANGES},
                 replace(FP, precision=precision))
    with pytest.raises(ValueError, match=f"ranges.*{precision}"):
        load_embeddings(path)


def test_extra_tensors_are_refused(tmp_path):
    path = write(tmp_path / "d.safetensors", {"embeddings": unit_rows(3, 64),
                                              "ids": np.arange(3)})
    with pytest.raises(ValueError, match="unexpected tensor.*'ids'"):
        load_embeddings(path)


def test_missing_embeddings_tensor_is_refused(tmp_path):
    path = write(tmp_path / "d.safetensors", {"ranges": RANGES}, INT8)
    with pytest.raises(ValueError, match="no 'embeddings' tensor"):
        load_embeddings(path)


@pytest.mark.parametrize("precision", ["float32", "float16"])
def test_nan_or_inf_vectors_are_refused_with_the_count(tmp_path, precision):
    """NaN scores would make the search result silently wrong."""
    emb = unit_rows(5, 64).astype(precision)
    emb[1, 3], emb[3, 0], emb[3, 1] = np.nan, np.inf, -np.inf
    fp = replace(FP, precision=precision)
    path = write(tmp_path / "d.safetensors", {"embeddings": emb}, fp)
    with pytest.raises(ValueError, match="2 of 5 rows.*NaN or inf"):
        load_embeddings(path)
    with pytest.raises(ValueError, match="2 of 5 rows.*NaN or inf"):
        save_embeddings(tmp_path / "e.safetensors", emb, fp)
    assert not (tmp_path / "e.safetensors").exists()


# --- files that are not files, or not whole ---------------------------------------------


def load_within(path, seconds: float = 10):
    """load_embeddings(path) in a thread; fail instead of hanging the test run."""
    result = {}

    def target():
        try:
            load_embeddings(path)
        except BaseException as e:  # noqa: BLE001 - hand any outcome to the test
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"load_embeddings({path}) hangs"
    return result.get("error")


def test_a_directory_is_refused(tmp_path):
    error = load_within(tmp_path)
    assert isinstance(error, ValueError) and "is a directory" in str(error)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "d.safetensors"
    os.mkfifo(fifo)
    error = load_within(fifo)
    assert isinstance(error, ValueError) and "not a regular file" in str(error)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_is_refused_without_hanging():
    error = load_within("/dev/zero")
    assert isinstance(error, ValueError) and "not a regular file" in str(error)


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="No embedding file"):
        load_embeddings(tmp_path / "missing.safetensors")


def test_a_symlink_to_a_file_loads(tmp_path):
    path = save_embeddings(tmp_path / "d.safetensors", unit_rows(3, 64), FP)
    (tmp_path / "link.safetensors").symlink_to(path)
    assert load_embeddings(tmp_path / "link.safetensors").embeddings.shape == (3, 64)


def test_truncated_or_corrupt_files_are_value_errors(tmp_path):
    """Never a SafetensorError or a Rust panic: a ValueError that names the file."""
    good = save_embeddings(tmp_path / "good.safetensors", unit_rows(4, 64), FP).read_bytes()
    header_end = 8 + struct.unpack("<Q", good[:8])[0]
    cases = {
        "empty": b"",
        "4 bytes": good[:4],
        "half the header": good[: header_end // 2],
        "half the data": good[: header_end + 500],
        "one byte short": good[:-1],
        "one byte more": good + b"\0",
        "header not JSON": struct.pack("<Q", 6) + b"\xff{oops",
        "header a list": struct.pack("<Q", 2) + b"[]",
        "header nested too deep": struct.pack("<Q", 200_000) + b"[" * 100_000 + b"]" * 100_000,
        "random bytes": np.random.default_rng(0).bytes(300),
    }
    for name, raw in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(raw)
        with pytest.raises(ValueError, match=str(path).replace("\\", "\\\\")):
            load_embeddings(path)


@pytest.mark.parametrize("entry", [
    {"dtype": "F64", "shape": [2, 64], "data_offsets": [0, 1024]},
    {"dtype": "F32", "shape": [2, 64], "data_offsets": [0, 1000]},
    {"dtype": "F32", "shape": [2, 64], "data_offsets": [24, 1048]},
    {"dtype": "F32", "shape": [2, -64], "data_offsets": [0, 512]},
    {"dtype": "F32", "shape": "2x64", "data_offsets": [0, 512]},
    {"dtype": "F32", "shape": [2, 64]},
    {"dtype": ["F32"], "shape": [2, 64], "data_offsets": [0, 512]},
    "F32",
])
def test_corrupt_tensor_entries_are_value_errors(tmp_path, entry):
    meta = {"format": FORMAT, "fingerprint": json.dumps(GOOD)}
    path = write_raw(tmp_path / "d.safetensors", {"__metadata__": meta, "embeddings": entry},
                     bytes(1024))
    with pytest.raises(ValueError, match="d.safetensors"):
        load_embeddings(path)


def test_huge_headers_are_refused_before_reading_them(tmp_path):
    path = tmp_path / "d.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(ValueError, match="header"):
        load_embeddings(path)
    # A real 2 MB header (a padded prompt): far beyond what save_embeddings writes.
    meta = {"format": FORMAT, "fingerprint": json.dumps({**GOOD, "prompt": "x" * 2_000_000})}
    write_raw(path, {"__metadata__": meta,
                     "embeddings": {"dtype": "F32", "shape": [1, 64], "data_offsets": [0, 256]}},
              unit_rows(1, 64).tobytes())
    with pytest.raises(ValueError, match="header of 2,0"):
        load_embeddings(path)
    with pytest.raises(ValueError, match="prompt"):
        save_embeddings(path, unit_rows(1, 64), replace(FP, prompt="x" * 2_000_000))


# --- atomic saves -----------------------------------------------------------------------


def test_save_replaces_the_file_instead_of_rewriting_it(tmp_path):
    """A reader that has the old file open (or mapped) keeps reading the old vectors."""
    path = save_embeddings(tmp_path / "d.safetensors", unit_rows(50, 64, seed=1), FP)
    old_bytes = path.read_bytes()
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    with open(path, "rb") as reader:
        save_embeddings(path, unit_rows(3, 64, seed=2), FP)
        assert reader.read() == old_bytes
    assert bytes(mapped) == old_bytes
    assert load_embeddings(path).embeddings.shape == (3, 64)


def test_save_over_the_file_just_loaded(tmp_path):
    """Load, append, save to the same path: the usual incremental index update."""
    path = save_embeddings(tmp_path / "d.safetensors", unit_rows(4, 64, seed=1), FP)
    old = load_embeddings(path, FP).embeddings
    both = np.concatenate([old, unit_rows(2, 64, seed=2)])
    save_embeddings(path, both, FP)
    assert np.array_equal(load_embeddings(path, FP).embeddings, both)


def test_a_failed_save_leaves_the_old_file_and_no_litter(tmp_path, monkeypatch):
    """A write that fails (here: the disk is full when syncing) changes nothing."""
    path = save_embeddings(tmp_path / "d.safetensors", unit_rows(4, 64), FP)
    old_bytes = path.read_bytes()

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        save_embeddings(path, unit_rows(9, 64), FP)
    assert path.read_bytes() == old_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.safetensors"]


def test_save_to_a_directory_is_refused(tmp_path):
    (tmp_path / "d.safetensors").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        save_embeddings(tmp_path / "d.safetensors", unit_rows(2, 64), FP)


def test_saved_files_get_ordinary_permissions(tmp_path):
    """Not the 0600 of a temporary file: others can read an index as before."""
    path = save_embeddings(tmp_path / "d.safetensors", unit_rows(2, 64), FP)
    (tmp_path / "plain").write_bytes(b"")  # what open() makes under the current umask
    assert path.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777


def test_a_loaded_file_searches_only_real_rows(tmp_path):
    """End to end: what loads is exactly what was saved, so ids exist."""
    emb = unit_rows(4, 64)
    loaded = load_embeddings(save_embeddings(tmp_path / "d.safetensors", emb, FP), FP)
    hits = semantic_search(unit_rows(2, 64, seed=3), loaded.embeddings, top_k=10)
    assert all(0 <= h["corpus_id"] < 4 for row in hits for h in row)
