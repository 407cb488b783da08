"""The bad-input corpus: every kind of broken source file or manifest gives a reject with a
reason or a clear InputError; no traceback, no worker crash, nothing already written damaged."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.cli import main
from engine.errors import InputError, ShardError
from engine.pools import index_pool
from engine.recipe import AudioPool, load_recipe
from engine.run_record import shard_files
from engine.runtime import run
from engine.shards import read_shard

from .conftest import all_rows, small_recipe, write_recipe

SR = 16000


def _tone(seconds: float = 1.0, level: float = 0.1) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (level * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _bytes(x: np.ndarray, fmt: str, subtype: str | None = None, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def make_bad_audio(folder: Path) -> dict[str, str]:
    """Write one file of each bad kind; returns {file name: a word its reason must contain}."""
    folder.mkdir(parents=True, exist_ok=True)
    wav, flac = _bytes(_tone(), "WAV"), _bytes(_tone(), "FLAC")
    expected: dict[str, str] = {}

    def put(name: str, data: bytes, word: str) -> None:
        (folder / name).write_bytes(data)
        expected[name] = word

    put("zero_length.wav", b"", "empty")
    put("header_only.wav", wav[:44], "0 frames")
    put("truncated.wav", wav[: len(wav) // 2], "truncated")
    put("truncated.flac", flac[: len(flac) // 2], "truncated")
    put("text_named.wav", b"just some words\n" * 50, "not an audio file")
    put("png_named.flac", b"\x89PNG\r\n\x1a\n" + bytes(300), "not an audio file")
    put("random_bytes.wav", np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "not an audio file")
    nan, inf = _tone(), _tone()
    nan[50], inf[70] = np.nan, np.inf
    put("nan_samples.wav", _bytes(nan, "WAV", "FLOAT"), "nan")
    put("inf_samples.wav", _bytes(inf, "WAV", "FLOAT"), "inf")
    put("silent.wav", _bytes(np.zeros(SR, np.float32), "WAV"), "silent")
    rate0 = bytearray(wav)
    rate0[24:28] = struct.pack("<I", 0)
    put("rate_0hz.wav", bytes(rate0), "0 hz")
    absurd = bytearray(wav)
    absurd[24:28] = struct.pack("<I", 10_000_000)
    absurd[28:32] = struct.pack("<I", 20_000_000)
    put("rate_absurd.wav", bytes(absurd), "sample rate")
    put("eight_channels.wav", _bytes(np.tile(_tone()[:, None], (1, 8)), "WAV"), "channels")
    # Damage deep inside a file: every frame is checked, not a few windows.
    late = _tone(30.0)
    late[int(0.6 * late.size) : int(0.6 * late.size) + 800] = np.nan
    put("nan_burst_at_60_percent.wav", _bytes(late, "WAV", "FLOAT"), "nan")
    long_flac = bytearray(_bytes(_tone(30.0, 0.3) + 0.01 * np.random.default_rng(2).standard_normal(30 * SR)
                                 .astype(np.float32), "FLAC"))
    middle = len(long_flac) * 3 // 5
    long_flac[middle : middle + 4000] = np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    put("corrupt_frames_mid_file.flac", bytes(long_flac), "corrupt")
    # Levels no recording has: a float file far past full scale, a 1e30 burst in quiet
    # noise, integer PCM values stored as float, and dither alone.
    put("scaled_by_1e36.wav", _bytes(_tone() * np.float32(1e36), "WAV", "FLOAT"), "absurd level: peak")
    burst = _tone(3.0, 0.01)
    burst[SR : SR + SR // 2] = np.float32(1e30)
    put("burst_at_1e30.wav", _bytes(burst, "WAV", "FLOAT"), "absurd level: peak")
    put("int16_values_as_float.wav", _bytes(_tone(1.0, 0.5) * np.float32(32767), "WAV", "FLOAT"), "divide by 32768")
    dither = np.zeros(SR, np.float32)
    dither[::400] = np.float32(10 ** (-80 / 20))
    put("dither_only.wav", _bytes(dither, "WAV", "FLOAT"), "absurd level: rms")
    put("constant_offset.wav", _bytes(np.full(SR, 0.25, np.float32), "WAV", "FLOAT"), "constant offset, not a signal")
    os.symlink(folder / "does_not_exist.wav", folder / "dangling_link.wav")
    expected["dangling_link.wav"] = "not found"
    os.symlink(folder / "loop_b.wav", folder / "loop_a.wav")
    os.symlink(folder / "loop_a.wav", folder / "loop_b.wav")
    expected["loop_a.wav"] = expected["loop_b.wav"] = "symbolic links"
    os.mkfifo(folder / "fifo.wav")
    expected["fifo.wav"] = "regular file"
    return expected


def _reasons(rejects: list[dict]) -> dict[str, str]:
    return {Path(r["path"]).name: r["reason"].lower() for r in rejects}


def test_every_bad_audio_kind_is_rejected_with_its_reason(tmp_path):
    expected = make_bad_audio(tmp_path / "pool")
    (tmp_path / "pool" / "good.wav").write_bytes(_bytes(_tone(), "WAV"))
    assert len(expected) >= 17
    started = time.perf_counter()
    items, rejects = index_pool("noise", AudioPool(paths=["pool/*"]), tmp_path)
    assert time.perf_counter() - started < 30  # nothing hangs (the FIFO above would block a naive open)
    assert items.items == ["pool/good.wav"]
    reasons = _reasons(rejects)
    assert set(reasons) == set(expected)
    for name, word in expected.items():
        assert word in reasons[name], (name, reasons[name])


def test_an_hours_long_file_is_checked_in_full_once_and_then_known_from_the_cache(tmp_path, monkeypatch):
    from engine import pools
    from engine.probe_cache import ProbeCache

    # Two hours at 1 kHz, damaged in its last second: found, as every frame is decoded.
    n = 1000 * 7200
    x = (0.05 * np.sin(np.arange(n, dtype=np.float32) * 0.3)).astype(np.float32)
    sf.write(tmp_path / "long.wav", x, 1000, subtype="FLOAT")
    x[-500] = np.nan
    sf.write(tmp_path / "late_nan.wav", x, 1000, subtype="FLOAT")
    cache = ProbeCache(tmp_path / "cache.sqlite3")
    items, rejects = index_pool("noise", AudioPool(paths=["*.wav"]), tmp_path, cache=cache)
    assert items.items == ["long.wav"] and abs(items.duration_s[0] - 7200) < 1e-6 and items.probed == 2
    assert "nan" in _reasons(rejects)["late_nan.wav"]

    def no_probe(path):
        raise AssertionError(f"{path} decoded again although its content did not change")

    monkeypatch.setattr(pools.audio_io, "probe", no_probe)
    again, rejects_again = index_pool("noise", AudioPool(paths=["*.wav"]), tmp_path, cache=cache)
    assert again.items == items.items and again.cached == 2 and rejects_again == rejects
    items, rejects = index_pool("noise", AudioPool(paths=["long.wav"], max_duration_s=600), tmp_path, cache=cache)
    assert not items.items and "longer than pools.noise.max_duration_s" in rejects[0]["reason"]


def _good_files(folder: Path, n: int = 3) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        (folder / f"ok{i}.wav").write_bytes(_bytes(_tone(1 + i), "WAV"))
        names.append(f"ok{i}.wav")
    return names


@pytest.mark.parametrize(
    "kind, write, message",
    [
        ("non_utf8", lambda p: p.write_bytes(b"path,text\nok0.wav,caf\xe9\xff\n"), "utf-8"),
        ("missing_path_column", lambda p: p.write_text("file,text\nok0.wav,x\n"), "no 'path' column"),
        ("empty", lambda p: p.write_text("path,text\n"), "lists no files"),
        ("ragged_csv", lambda p: p.write_text('path,text\nok0.wav,a,b,c\n"unterminated\n'), "cannot read manifest"),
        ("wrong_extension", lambda p: p.with_suffix(".xlsx").write_text("x"), "manifest must be"),
    ],
)
def test_a_broken_manifest_is_a_clear_input_error(tmp_path, kind, write, message):
    _good_files(tmp_path)
    manifest = tmp_path / "manifest.csv"
    write(manifest)
    name = "manifest.xlsx" if kind == "wrong_extension" else "manifest.csv"
    with pytest.raises(InputError) as info:
        index_pool("speech", AudioPool(manifest=name), tmp_path)
    assert message in str(info.value).lower()
    assert name in str(info.value)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
@pytest.mark.parametrize("encoding, evidence", [
    ("utf-16", "its byte-order mark is FF FE"),  # Excel's "Unicode text" and Windows tools
    ("utf-16-be-bom", "its byte-order mark is FE FF"),
    ("utf-16-le", "little-endian without a byte-order mark"),
    ("utf-16-be", "big-endian without a byte-order mark"),  # pyarrow read this as NUL-riddled names
])
def test_a_utf16_manifest_is_named_as_utf16_with_the_fix(tmp_path, suffix, encoding, evidence):
    _good_files(tmp_path)
    if suffix == ".jsonl":
        text = "".join(json.dumps({"path": f"ok{i}.wav", "text": "hé"}) + "\n" for i in range(3))
    else:
        sep = "\t" if suffix == ".tsv" else ","
        text = sep.join(["path", "text", "speaker"]) + "\n" + "".join(
            sep.join([f"ok{i}.wav", "hé", "s1"]) + "\n" for i in range(3))
    data = b"\xfe\xff" + text.encode("utf-16-be") if encoding == "utf-16-be-bom" else text.encode(encoding)
    manifest = tmp_path / f"manifest{suffix}"
    manifest.write_bytes(data)
    with pytest.raises(InputError) as info:
        index_pool("speech", AudioPool(manifest=manifest.name), tmp_path)
    msg = str(info.value)
    assert msg.startswith(f"{manifest}: is UTF-16 encoded ({evidence}") and "save it as UTF-8" in msg


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_utf8_manifest_with_a_byte_order_mark_is_read(tmp_path, suffix):
    _good_files(tmp_path)
    sep = "\t" if suffix == ".tsv" else ","
    text = sep.join(["path", "text"]) + "\n" + "".join(f"ok{i}.wav{sep}hé\n" for i in range(3))
    (tmp_path / f"m{suffix}").write_bytes(text.encode("utf-8-sig"))
    items, rejects = index_pool("speech", AudioPool(manifest=f"m{suffix}"), tmp_path)
    assert not rejects and items.items == ["ok0.wav", "ok1.wav", "ok2.wav"]
    assert [row["text"] for row in items.labels] == ["hé"] * 3


def test_manifest_rows_with_duplicate_missing_or_empty_paths_are_rejected(tmp_path):
    _good_files(tmp_path)
    (tmp_path / "m.jsonl").write_text(
        "\n".join(json.dumps(r) for r in [
            {"path": "ok0.wav", "text": "a"}, {"path": "ok1.wav", "text": "b"},
            {"path": "ok0.wav", "text": "again"}, {"path": "gone.wav", "text": "c"},
            {"path": "", "text": "d"},
        ]) + "\n"
    )
    items, rejects = index_pool("speech", AudioPool(manifest="m.jsonl"), tmp_path)
    assert items.items == ["ok0.wav", "ok1.wav"]
    assert [row["text"] for row in items.labels] == ["a", "b"]  # the first of a duplicate wins
    reasons = sorted(r["reason"] for r in rejects)
    assert any("listed twice" in r for r in reasons)
    assert any("not found" in r for r in reasons)
    assert any("empty path" in r for r in reasons)



@pytest.mark.ray
def test_a_run_over_a_pool_of_bad_files_completes_and_uses_none_of_them(ray_local, demo_corpus, tmp_path):
    expected = make_bad_audio(tmp_path / "noise")
    for src in sorted((demo_corpus / "noise" / "road").glob("*.wav")):
        (tmp_path / "noise" / src.name).write_bytes(src.read_bytes())
    data = small_recipe(demo_corpus, splits={"train": {"samples": 40}})
    data["pools"]["cabin"] = {"paths": [str(tmp_path / "noise" / "*")]}
    out = tmp_path / "out"
    summary = run(load_recipe(write_recipe(tmp_path / "r.yaml", data)), out, progress=False)
    assert summary.status == "complete" and summary.samples == 40
    rejected = _reasons([json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()])
    assert set(expected) <= set(rejected)
    used = {Path(s["item"]).name for f in shard_files(out) for r in read_shard(f).to_pylist() for s in r["sources"]}
    assert used and not used & set(expected)


def _bad_noise_pool(folder: Path, corpus: Path) -> dict[str, str]:
    """Good noise files plus one bad file of each kind; returns {bad name: expected reason word}."""
    folder.mkdir()
    for src in sorted((corpus / "noise" / "car").glob("*.wav"))[:2]:
        (folder / src.name).write_bytes(src.read_bytes())
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_text("this is not audio\n" * 20)
    good = (folder / sorted(p.name for p in folder.glob("car*.wav"))[0]).read_bytes()
    (folder / "truncated.wav").write_bytes(good[: len(good) // 3])
    sf.write(folder / "nan.wav", np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    sf.write(folder / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    return {"empty.wav": "empty", "text.wav": "audio", "truncated.wav": "trunc",
            "nan.wav": "nan", "silent.wav": "silent"}


@pytest.mark.ray
def test_bad_source_files_are_rejected_with_a_reason_and_never_used(ray_local, demo_corpus, tmp_path):
    bad = _bad_noise_pool(tmp_path / "noise", demo_corpus)
    data = small_recipe(demo_corpus, splits={"train": {"samples": 40}})
    data["pools"]["cabin"] = {"paths": [str(tmp_path / "noise" / "*.wav")]}
    out = tmp_path / "out"
    summary = run(load_recipe(write_recipe(tmp_path / "r.yaml", data)), out, progress=False)
    assert summary.status == "complete" and summary.samples == 40
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    by_name = {Path(r["path"]).name: r["reason"].lower() for r in rejects}
    assert set(by_name) == set(bad)
    for name, word in bad.items():
        assert word in by_name[name], (name, by_name[name])
    used = {Path(s["item"]).name for r in all_rows(out) for s in r["sources"]}
    assert not used & set(bad)


@pytest.mark.ray
def test_new_files_in_a_pool_between_run_and_resume_are_refused_and_nothing_is_damaged(
    ray_local, demo_corpus, tmp_path
):
    noise = tmp_path / "noise"
    noise.mkdir()
    for src in sorted((demo_corpus / "noise" / "road").glob("*.wav")):
        (noise / src.name).write_bytes(src.read_bytes())
    data = small_recipe(demo_corpus, splits={"train": {"samples": 40}})
    data["pools"]["cabin"] = {"paths": [str(noise / "*.wav")]}
    recipe = write_recipe(tmp_path / "r.yaml", data)
    out = tmp_path / "out"
    run(load_recipe(recipe), out, progress=False)
    shard_files(out)[0].unlink()  # an interrupted run: one shard still to write
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}
    (noise / "extra.wav").write_bytes(_bytes(_tone(3), "WAV"))
    with pytest.raises(ShardError, match=r"pools changed.*'cabin': 1 item\(s\) added"):
        run(load_recipe(recipe), out, progress=False)
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()
             and p.name != "run.json"}
    assert after == {p: h for p, h in before.items() if p.name != "run.json"}


def test_fail_mode_names_the_bad_file_without_a_traceback(demo_corpus, tmp_path):
    make_bad_audio(tmp_path / "noise")
    data = small_recipe(demo_corpus, on_bad_input="fail", splits={"train": {"samples": 10}})
    data["pools"]["cabin"] = {"paths": [str(tmp_path / "noise" / "*.wav")]}
    recipe = write_recipe(tmp_path / "r.yaml", data)
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "plan", str(recipe)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "noise/" in proc.stderr and "on_bad_input" in proc.stderr


def test_fail_mode_stops_naming_the_file_without_a_traceback(demo_corpus, tmp_path):
    _bad_noise_pool(tmp_path / "noise", demo_corpus)
    data = small_recipe(demo_corpus, on_bad_input="fail", splits={"train": {"samples": 20}})
    data["pools"]["cabin"] = {"paths": [str(tmp_path / "noise" / "*.wav")]}
    recipe = write_recipe(tmp_path / "r.yaml", data)
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "plan", str(recipe)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "empty.wav" in proc.stderr and "on_bad_input" in proc.stderr
    assert not (tmp_path / "out").exists()


def _all_bad_noise_recipe(demo_corpus: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    expected = make_bad_audio(tmp_path / "noise")
    data = small_recipe(demo_corpus, splits={"train": {"samples": 10}})
    data["pools"]["cabin"] = {"paths": [str(tmp_path / "noise" / "*.wav")]}
    return write_recipe(tmp_path / "r.yaml", data), expected


def test_a_pool_with_every_file_rejected_names_the_files_and_reasons_in_plan(demo_corpus, tmp_path, capsys):
    recipe, expected = _all_bad_noise_recipe(demo_corpus, tmp_path)
    assert main(["plan", str(recipe)]) == 1
    err = capsys.readouterr().err
    total = int(re.search(r"pools\.cabin: no usable files: all (\d+) were rejected:\n", err)[1])
    listed = [line.strip() for line in err.splitlines() if line.startswith(f"  {tmp_path / 'noise'}")]
    assert len(listed) == 5  # the first five, by path, each with its reason
    assert all(expected[Path(line.split(": ", 1)[0]).name] in line.lower() for line in listed), listed
    assert f"... and {total - 5} more" in err and total > 5
    assert "rejects.jsonl" not in err  # a refused run writes none (it leaves nothing in a fresh OUT)


@pytest.mark.ray
def test_a_run_with_every_file_of_a_pool_rejected_names_them_and_leaves_nothing(ray_local, demo_corpus, tmp_path):
    recipe, expected = _all_bad_noise_recipe(demo_corpus, tmp_path)
    with pytest.raises(InputError) as info:
        run(load_recipe(recipe), tmp_path / "out", progress=False)
    msg = str(info.value)
    assert "pools.cabin: no usable files" in msg and "... and" in msg and "rejects.jsonl" not in msg
    assert not (tmp_path / "out").exists()


def make_bad_images(folder: Path) -> dict[str, str]:
    """One file of each bad image kind; returns {file name: a word its reason must contain}."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    img = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
    png = cv2.imencode(".png", img)[1].tobytes()
    jpg = cv2.imencode(".jpg", img)[1].tobytes()
    huge = cv2.imencode(".png", np.zeros((2100, 2100, 3), np.uint8))[1].tobytes()
    files = {
        "zero_length.png": (b"", "empty"),
        "text_named.png": (b"words, not pixels\n" * 20, "not an image"),
        "audio_named.png": (_bytes(_tone(0.1), "WAV"), "not an image"),
        "truncated.png": (png[: len(png) // 2], "truncated"),
        "truncated.jpg": (jpg[: len(jpg) // 3], "truncated"),
        "header_only.png": (png[:33], "truncated"),
        "oversized.png": (huge, "oversized"),
        "one_pixel.png": (cv2.imencode(".png", img[:1, :1])[1].tobytes(), "too small: 1×1"),
        "thin_strip.png": (cv2.imencode(".png", img[:4, :])[1].tobytes(), "too small: 80×4"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: word for name, (_, word) in files.items()}


def test_every_bad_image_kind_is_rejected_with_its_reason(tmp_path):
    import cv2

    from engine.pools import INDEXERS
    from engine.recipe import ImagePool

    expected = make_bad_images(tmp_path / "img")
    (tmp_path / "img" / "good.png").write_bytes(cv2.imencode(".png", np.zeros((32, 40, 3), np.uint8))[1].tobytes())
    pool = ImagePool(kind="image", paths=["img/*"], max_pixels=4_000_000)
    items, rejects = INDEXERS["image"]("photos", pool, tmp_path, None)
    assert items.items == ["img/good.png"]
    reasons = _reasons(rejects)
    assert set(reasons) == set(expected)
    for name, word in expected.items():
        assert word in reasons[name], (name, reasons[name])


def test_the_bad_input_corpus_has_at_least_twenty_kinds(tmp_path):
    audio = make_bad_audio(tmp_path / "a")
    images = make_bad_images(tmp_path / "i")
    manifest_kinds = 5 + 3  # the parametrized broken manifests and the bad manifest rows above
    assert len(audio) + len(images) + manifest_kinds >= 20


# --------------------------------------------------------------------------- labels
# Labels are never silently rewritten: a manifest with two columns of one name, a label
# named like a column every row has, or two labels that would be one output column are
# errors naming the file, the column and the fix; nothing is written.


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
@pytest.mark.parametrize("column", ["text", "path"])
def test_a_manifest_with_two_columns_of_one_name_is_refused(tmp_path, suffix, column):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _good_files(tmp_path)
    names = ["path", "text", column]
    manifest = tmp_path / f"m{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.Table.from_arrays([pa.array(["ok0.wav"]), pa.array(["a"]), pa.array(["ok1.wav"])],
                                            names=names), manifest)
    else:
        sep = "\t" if suffix == ".tsv" else ","
        manifest.write_text(sep.join(names) + "\n" + sep.join(["ok0.wav", "a", "ok1.wav"]) + "\n")
    with pytest.raises(InputError) as info:
        index_pool("speech", AudioPool(manifest=manifest.name), tmp_path)
    msg = str(info.value)
    assert manifest.name in msg and f"{column!r} (2 times)" in msg and "rename" in msg


def test_a_table_pool_with_two_label_columns_of_one_name_is_refused_unless_left_out(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    audio = pa.array([{"bytes": _bytes(_tone(), "WAV"), "path": "a.wav"}],
                     pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    pq.write_table(pa.Table.from_arrays([audio, pa.array(["a"]), pa.array(["b"]), pa.array(["s1"])],
                                        names=["audio", "text", "text", "speaker"]), tmp_path / "t.parquet")
    with pytest.raises(InputError) as info:
        index_pool("speech", AudioPool(format="table", paths=["t.parquet"]), tmp_path)
    msg = str(info.value)
    assert "t.parquet" in msg and "'text'" in msg and "pools.speech.label_columns" in msg
    items, _ = index_pool("speech", AudioPool(format="table", paths=["t.parquet"], label_columns=["speaker"]),
                          tmp_path)
    assert items.labels == [{"speaker": "s1"}]


def test_a_row_schema_with_a_column_name_twice_is_refused():
    from types import SimpleNamespace

    import pyarrow as pa

    from engine.shards import shard_schema

    synth = SimpleNamespace(type="custom", embedding_dim=lambda: 4, hf_media_features=lambda: {},
                            media_fields=lambda: [pa.field("audio", pa.string())],
                            label_fields=lambda: [pa.field("audio", pa.string()), pa.field("params", pa.string())])
    with pytest.raises(ShardError) as info:
        shard_schema(synth, {})
    assert "'audio', 'params'" in str(info.value) and "custom" in str(info.value)


def _speech_manifest(corpus: Path, dest: Path, header: list[str], extra: dict[str, str]) -> Path:
    """The demo speech manifest with absolute paths, its columns in ``header`` order
    (a name twice is allowed) and ``extra`` columns filled with a constant."""
    import csv

    with open(corpus / "speech" / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(dest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            r = {**r, "path": str(corpus / "speech" / r["path"]), **extra}
            w.writerow([r[c] for c in header])
    return dest


def _label_case(kind: str, corpus: Path, tmp: Path) -> tuple[dict, list[str]]:
    """A recipe (as data) with one label problem, and the words its message must contain."""
    data = small_recipe(corpus, splits={"train": {"samples": 20}})
    speech = tmp / "speech.csv"
    data["pools"]["speech"] = {"manifest": str(speech)}
    if kind == "two_text_columns":  # the user's report: both text columns became the second
        _speech_manifest(corpus, speech, ["path", "text", "speaker", "text"], {})
        return data, ["speech.csv", "'text' (2 times)", "rename"]
    if kind == "two_path_columns":  # was a KeyError traceback
        _speech_manifest(corpus, speech, ["path", "path", "text"], {})
        return data, ["speech.csv", "'path' (2 times)", "rename"]
    if kind == "reserved_speech_label":
        _speech_manifest(corpus, speech, ["path", "text", "duration_s"], {"duration_s": "3.5"})
        return data, ["pools.speech", "'duration_s'", "speech.csv", "rename the column 'duration_s'"]
    if kind == "collision_with_a_noise_label":  # pool noise, label noise_type keeps its name
        _speech_manifest(corpus, speech, ["path", "text", "noise_type"], {"noise_type": "studio"})
        data["pools"]["noise"] = {"manifest": str(corpus / "noise" / "manifest.csv")}
        data["synth"]["noise"] = [{"pool": "noise", "snr_db_range": [0, 20]}]
        return data, ["pools.noise", "'noise_type'", "speech.csv", "overwrite", "rename the pool 'noise'"]
    if kind == "reserved_image_label":
        with open(corpus / "images" / "manifest.csv") as f:
            lines = f.read().splitlines()
        (tmp / "photos.csv").write_text("\n".join(
            [lines[0] + ",width"] + [f"{corpus / 'images' / ln.split(',')[0]},{ln.split(',', 1)[1]},640"
                                     for ln in lines[1:]]) + "\n")
        data = {"name": "t_images", "seed": 1, "output": {"format": "arrow", "samples_per_shard": 20},
                "pools": {"photos": {"kind": "image", "manifest": str(tmp / "photos.csv")}},
                "splits": {"train": {"samples": 20}},
                "synth": {"type": "image_augment", "images": "photos", "transforms": [{"HorizontalFlip": {"p": 0.5}}]}}
        return data, ["pools.photos", "'width'", "photos.csv", "rename the column 'width'"]
    raise AssertionError(kind)


LABEL_CASES = ["two_text_columns", "two_path_columns", "reserved_speech_label", "collision_with_a_noise_label",
               "reserved_image_label"]


@pytest.mark.parametrize("kind", LABEL_CASES)
def test_a_label_problem_stops_plan_naming_the_file_and_column_without_a_traceback(demo_corpus, tmp_path, kind):
    data, words = _label_case(kind, demo_corpus, tmp_path)
    recipe = write_recipe(tmp_path / "r.yaml", data)
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "plan", str(recipe)],
                          capture_output=True, text=True, timeout=120)
    # a manifest's own flaw is an input error (exit 1), a label the recipe cannot carry a recipe error (2)
    assert proc.returncode == (1 if kind.startswith("two_") else 2), proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, (word, proc.stderr)


@pytest.mark.ray
@pytest.mark.parametrize("kind", LABEL_CASES)
def test_a_label_problem_stops_a_run_before_anything_is_written(ray_local, demo_corpus, tmp_path, kind):
    from engine.errors import ShardsmithError

    data, words = _label_case(kind, demo_corpus, tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ShardsmithError) as info:
        run(load_recipe(write_recipe(tmp_path / "r.yaml", data)), out, progress=False)
    for word in words:
        assert word in str(info.value)
    assert not out.exists()


@pytest.mark.parametrize("members, name", [
    ({"json": {"text": "a"}, "txt": "b"}, "'text'"),
    ({"json": {"label": 1}, "cls": "2"}, "'label'"),
    ({"json": {"meta.lang": "en", "meta": {"lang": "de"}}}, "'meta.lang'"),
])
def test_a_webdataset_sample_with_two_values_for_one_label_is_refused(tmp_path, members, name):
    import tarfile

    with tarfile.open(tmp_path / "shard-0.tar", "w") as tar:
        for ext, value in {"wav": _bytes(_tone(), "WAV"), **members}.items():
            data = value if isinstance(value, bytes) else (
                json.dumps(value) if isinstance(value, dict) else value).encode()
            info = tarfile.TarInfo(f"utt0.{ext}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(InputError) as info:
        index_pool("speech", AudioPool(format="webdataset", paths=["shard-0.tar"]), tmp_path)
    msg = str(info.value)
    assert "shard-0.tar" in msg and name in msg and "'utt0'" in msg and "rename the key" in msg


def test_a_webdataset_label_given_twice_with_one_value_is_kept(tmp_path):
    import tarfile

    with tarfile.open(tmp_path / "shard-0.tar", "w") as tar:
        for ext, data in {"wav": _bytes(_tone(), "WAV"), "json": b'{"text": "hi", "label": "2"}',
                          "txt": b"hi\n", "cls": b"2"}.items():
            info = tarfile.TarInfo(f"utt0.{ext}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    items, _ = index_pool("speech", AudioPool(format="webdataset", paths=["shard-0.tar"]), tmp_path)
    assert items.labels == [{"text": "hi", "label": 2}]
