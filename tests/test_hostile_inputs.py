"""The hostile-input corpus: inputs a careful, hostile user feeds shardsmith on purpose.

``tests/test_bad_inputs.py`` holds the first corpus (broken files as they occur by
accident: empty, truncated, NaN, silent...). This file adds the inputs someone finds by
trying: headers that lie (a data chunk past the end of the file, 0 or 65,535 channels,
999 Hz), other containers and sample formats, other file types under an audio or image
name (gzip, zip, ELF, HTML, JSON, a Git LFS pointer, SVG, PSD, HEIC), sparse files of
gigabytes, symbolic links out to devices and system files, decompression bombs, file
names that are shell, glob or control syntax, manifests that point outside their folder
or are malformed in one of many ways, and recipe texts that abuse YAML.

Each kind is one entry of a table below, with the words its reject reason (in
``rejects.jsonl``) or its error must contain; an unusual input that is valid must be read
as meant (frames, rate, samples, pixels). The tables:

- ``hostile_audio`` / ``unusual_audio``: audio files a pool must reject, each with its
  reason / valid audio in rare containers, sample formats and chunk layouts;
- ``SPARSE_KINDS``: sparse files of 4-10 GiB, judged from a few reads in well under 5 s;
- ``HOSTILE_NAMES``: file names that are read as paths, never run by a shell or expanded;
- ``MANIFEST_ROWS``, ``MANIFEST_ERRORS``, ``PATH_TYPES``, ``UNUSUAL_MANIFESTS``,
  ``PATTERN_ERRORS``: rows that become rejects, manifests and globs that stop the run
  naming the file or field, path cells that are not text, and odd manifests that are fine;
- ``hostile_images`` / ``unusual_images``: the same for image pools;
- ``RECIPE_TEXTS`` / ``UNUSUAL_RECIPES``: recipe files refused naming the line or the
  field / odd ones that load;
- ``STANDALONE_KINDS``: kinds with a test of their own, among them sources that turn to
  junk while a run is written or before it is resumed (the shards written before keep
  their sha256).

Most tests call the indexers, the recipe loader and the worker directly (no Ray); one runs
the whole engine over hostile names and files. An input whose handling is still wrong (a
hang, a traceback, a silently wrong item, a misleading reason) is not here: it is listed
in issue 13 until the engine is fixed. ``test_the_hostile_input_corpus_counts_its_kinds``
counts the kinds, as docs/recipes.md gives them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import struct
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.audio.io import read_all
from engine.errors import InputError, RecipeError, ShardError
from engine.plan import make_plan
from engine.pools import INDEXERS, index_pool, index_pools
from engine.recipe import AudioPool, ImagePool, load_recipe
from engine.run_record import shard_files
from engine.shards import read_shard
from engine.sink import OutputSink
from engine.worker import make_shard

from .conftest import digests, write_recipe
from .test_bad_inputs import SR, _bytes, _good_files, _reasons, _tone

# --------------------------------------------------------------------------- helpers


def _wav() -> bytes:
    """1 s of a 440 Hz tone as a canonical 44-byte-header PCM_16 WAV (fields patched below)."""
    data = _bytes(_tone(), "WAV")
    assert data[12:16] == b"fmt " and data[36:40] == b"data"
    return data


def _patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def _riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _chunk(tag: bytes, payload: bytes) -> bytes:
    """A RIFF chunk, padded to an even length as the format requires."""
    return tag + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _noise(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    return (0.05 * np.random.default_rng(seed).standard_normal(int(SR * seconds))).astype(np.float32)


# --------------------------------------------------------------------------- audio files that lie


def hostile_audio(folder: Path) -> dict[str, str]:
    """Write one file of each hostile audio kind; returns {file name: words its reason must contain}."""
    folder.mkdir(parents=True, exist_ok=True)
    wav, flac = _wav(), _bytes(_tone(2), "FLAC")
    fmt_chunk, data_chunk = wav[12:36], wav[36:]
    expected: dict[str, str] = {}

    def put(name: str, data: bytes, words: str) -> None:
        (folder / name).write_bytes(data)
        expected[name] = words

    # Headers that lie
    put("data_chunk_past_the_end.wav", _patched(wav, 40, "<I", 10_000_000),
        "truncated: the wav header declares 5000000 frames but the file holds only 16000")
    put("zero_channels.wav", _patched(wav, 22, "<H", 0), "0 channels is not usable; expected 1..8")
    put("65535_channels.wav", _patched(wav, 22, "<H", 65535), "65535 channels is not usable; expected 1..8")
    for rate in (1, 999, 384_001):
        put(f"rate_{rate}hz.wav", _patched(_patched(wav, 24, "<I", rate), 28, "<I", 2 * rate),
            f"sample rate {rate} hz is not usable; expected 1000..384000 hz")
    put("zero_bits_per_sample.wav", _patched(wav, 34, "<H", 0), "unimplemented format")
    put("unknown_format_tag.wav", _patched(wav, 20, "<H", 0x1234), "malformed 'fmt ' chunk")
    put("no_data_chunk.wav", _riff(fmt_chunk), "no 'data' chunk")
    put("no_fmt_chunk.wav", _riff(data_chunk), "not an audio file: the .wav extension suggests wav audio")
    put("riff_but_avi.wav", b"RIFF" + struct.pack("<I", 100) + b"AVI " + bytes(100), "not an audio file")
    put("headerless_pcm.wav", (_tone() * 32767).astype("<i2").tobytes(), "not an audio file")
    # Other containers cut in half: libsndfile read the part left as if it were all
    for fmt, name, shown in [("RF64", "rf64_cut_in_half.wav", "RF64"), ("W64", "cut_in_half.w64", "W64"),
                             ("AIFF", "cut_in_half.aiff", "AIFF"), ("AU", "cut_in_half.au", "AU"),
                             ("NIST", "cut_in_half.sph", "NIST SPHERE")]:
        whole = _bytes(_tone(), fmt, "PCM_16")
        put(name, whole[: len(whole) // 2], f"truncated: the {shown.lower()} header declares 16000 frames but the file "
                                             "holds only ")
    # libsndfile calls these "malformed": the reason says they are cut short
    caf = _bytes(_tone(), "CAF", "PCM_16")
    put("cut_in_half.caf", caf[: len(caf) // 2], "truncated: the caf header declares 32000 bytes of audio data but "
                                                "the file holds only")
    opus = _bytes((0.1 * np.sin(np.arange(48000) * 0.05)).astype(np.float32), "OGG", "OPUS", sr=48000)
    put("opus_cut_to_3000_bytes.ogg", opus[:3000], "truncated: ogg page 3 needs")
    put("data_size_zero_then_samples.wav", _patched(wav, 40, "<I", 0),
        "no audio: the wav header declares 0 bytes of data but 32,000 bytes follow it (a streaming writer that "
        "never finished its header)")
    # FLAC
    put("zero_length.flac", b"", "empty file (0 bytes)")
    put("streaminfo_only.flac", flac[:4] + bytes([0x80]) + flac[5:42], "truncated or corrupt")
    put("truncated_flac_named.wav", flac[: len(flac) // 2], "truncated or corrupt")
    # Another file type under an audio name
    put("gzip_of_a_wav.wav", gzip.compress(wav), "not an audio file")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("a.wav", wav)
    put("zip_of_a_wav.wav", zipped.getvalue(), "not an audio file")
    put("elf_program.wav", Path(sys.executable).resolve().read_bytes()[:4096], "not an audio file")
    put("html_error_page.wav", b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n",
        "the content looks like text")
    put("json_error.wav", json.dumps({"error": "AccessDenied", "status": 403}).encode(), "the content looks like text")
    put("git_lfs_pointer.wav", b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64
        + b"\nsize 48044\n", "the content looks like text")
    # Symbolic links out of the pool's folder
    os.symlink("/dev/zero", folder / "link_to_dev_zero.wav")
    os.symlink("/dev/urandom", folder / "link_to_dev_urandom.wav")
    expected["link_to_dev_zero.wav"] = expected["link_to_dev_urandom.wav"] = "not a regular file"
    os.symlink("/etc/passwd", folder / "link_to_etc_passwd.wav")
    expected["link_to_etc_passwd.wav"] = "the content looks like text"
    # Levels a mix cannot use
    put("minus_100_dbfs.wav", _bytes(np.full(SR, 1e-5, np.float32), "WAV", "FLOAT"),
        "silent: peak -100.0 dbfs is below the -90 dbfs floor")
    put("subnormal_floats.wav", _bytes(np.full(SR, 1e-40, np.float32), "WAV", "FLOAT"), "silent: peak")
    return expected


def test_every_hostile_audio_kind_is_rejected_with_its_reason(tmp_path):
    expected = hostile_audio(tmp_path / "pool")
    (tmp_path / "pool" / "good.wav").write_bytes(_wav())
    started = time.perf_counter()
    items, rejects = index_pool("noise", AudioPool(paths=["pool/*"]), tmp_path)
    assert time.perf_counter() - started < 20  # /dev/zero and /dev/urandom are never read
    assert items.items == ["pool/good.wav"]
    reasons = _reasons(rejects)
    assert set(reasons) == set(expected)
    for name, words in expected.items():
        assert words in reasons[name], (name, reasons[name])


def test_a_file_without_read_permission_is_rejected(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    f = tmp_path / "locked.wav"
    f.write_bytes(_wav())
    f.chmod(0)
    _, rejects = index_pool("noise", AudioPool(paths=["*.wav"]), tmp_path)
    assert rejects[0]["reason"] == "not readable: permission denied"


# --------------------------------------------------------------------------- unusual but valid audio


def unusual_audio(folder: Path) -> dict[str, tuple[np.ndarray, int, float]]:
    """Valid audio in rare containers, sample formats and layouts; returns
    {file name: (the samples written, sample rate, how close a read must come)}."""
    folder.mkdir(parents=True, exist_ok=True)
    tone, wav = _tone(), _wav()
    pcm16 = 1.0 / 32768 + 1e-6
    expected: dict[str, tuple[np.ndarray, int, float]] = {}

    def put(name: str, data: bytes, samples: np.ndarray, rate: int, tolerance: float) -> None:
        (folder / name).write_bytes(data)
        expected[name] = (samples, rate, tolerance)

    for fmt, ext in [("AIFF", "aiff"), ("CAF", "caf"), ("W64", "w64"), ("AU", "au"), ("NIST", "sph")]:
        put(f"container.{ext}", _bytes(tone, fmt), tone, SR, pcm16)
    put("rf64_named.wav", _bytes(tone, "RF64"), tone, SR, pcm16)
    for subtype, tolerance in [("PCM_U8", 1 / 128 + 1e-6), ("ULAW", 0.003), ("ALAW", 0.003),
                               ("PCM_24", 2**-23 + 1e-7), ("DOUBLE", 0.0)]:
        put(f"subtype_{subtype.lower()}.wav", _bytes(tone, "WAV", subtype), tone, SR, tolerance)
    # Extra chunks: an odd-sized LIST (padded) and a JUNK chunk before the data, a LIST after it
    put("list_and_junk_before_data.wav",
        _riff(wav[12:36], _chunk(b"LIST", b"INFOx"), _chunk(b"JUNK", bytes(28)), wav[36:]), tone, SR, pcm16)
    put("list_after_data.wav", _riff(wav[12:], _chunk(b"LIST", b"INFO")), tone, SR, pcm16)
    odd = _tone(16001 / SR)  # 16001 one-byte frames: an odd data chunk, then its pad byte, then a LIST
    u8 = _bytes(odd, "WAV", "PCM_U8")
    put("odd_data_chunk_then_list.wav", _riff(u8[12:] + b"\x00", _chunk(b"LIST", b"INFO")), odd, SR, 1 / 128 + 1e-6)
    # Compressed audio under another (plausible) extension, read by its content (lossy:
    # only the length is compared)
    at48k = (0.1 * np.sin(np.arange(24000) * 0.05)).astype(np.float32)
    put("opus_named.ogg", _bytes(at48k, "OGG", "OPUS", sr=48000), at48k, 48000, np.inf)
    put("vorbis_named.opus", _bytes(tone[: SR // 2], "OGG", "VORBIS"), tone[: SR // 2], SR, np.inf)
    put("flac_named.wav", _bytes(tone, "FLAC"), tone, SR, pcm16)
    put("no_extension", wav, tone, SR, pcm16)
    # The ends of the accepted rate range
    low = (0.1 * np.sin(np.arange(1000) * 0.3)).astype(np.float32)
    put("rate_1000hz.wav", _bytes(low, "WAV", sr=1000), low, 1000, pcm16)
    high = (0.1 * np.sin(np.arange(38400) * 0.01)).astype(np.float32)
    put("rate_384000hz.wav", _bytes(high, "WAV", sr=384_000), high, 384_000, pcm16)
    return expected


def test_unusual_but_valid_audio_is_indexed_and_read_exactly(tmp_path):
    expected = unusual_audio(tmp_path / "pool")
    items, rejects = index_pool("noise", AudioPool(paths=["pool/*"]), tmp_path)
    assert rejects == []
    assert items.items == sorted(f"pool/{name}" for name in expected)
    for i, item in enumerate(items.items):
        samples, rate, tolerance = expected[item.removeprefix("pool/")]
        assert (items.frames[i], items.sample_rate[i], items.channels[i]) == (len(samples), rate, 1), item
        if np.isfinite(tolerance):
            read = read_all(items.paths[i])[:, 0]
            assert np.abs(read - samples).max() <= tolerance, item


# --------------------------------------------------------------------------- sparse files of gigabytes

GiB = 1 << 30


def _sparse(path: Path, head: bytes, size: int) -> None:
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)


# name -> (the first bytes, the apparent size, words its reason must contain)
SPARSE_KINDS = {
    "ten_gib_no_header.wav": (b"", 10 * GiB, "not an audio file"),
    # a header declaring 4 GiB of samples, one byte short of them
    "four_gib_declared_one_byte_short.wav": (None, 4 * GiB - 1, "truncated: the wav header declares 2147483640 frames"),
    # a real 1 s header over 10 GiB of zeros: the 1 s is read, the rest is trailing bytes
    "ten_gib_of_zeros_after_a_header.wav": (b"header", 10 * GiB, "silent: all samples are zero"),
}


def test_sparse_files_of_gigabytes_are_judged_without_being_read(tmp_path):
    folder = tmp_path / "pool"
    folder.mkdir()
    wav = _wav()
    for name, (head, size, _) in SPARSE_KINDS.items():
        if head is None:
            head = _patched(_patched(wav[:44], 4, "<I", 0xFFFFFFF0), 40, "<I", 0xFFFFFFF0)
        elif head == b"header":
            head = wav[:44]
        _sparse(folder / name, head, size)
    if any(p.stat().st_blocks * 512 > 64 << 20 for p in folder.iterdir()):
        pytest.skip("this file system does not keep files sparse")
    started = time.perf_counter()
    _, rejects = index_pool("noise", AudioPool(paths=["pool/*.wav"]), tmp_path)
    assert time.perf_counter() - started < 5  # 24 GiB apparent: reading any of it whole would take minutes
    reasons = _reasons(rejects)
    assert set(reasons) == set(SPARSE_KINDS)
    for name, (_, _, words) in SPARSE_KINDS.items():
        assert words in reasons[name], (name, reasons[name])


# --------------------------------------------------------------------------- file names that are syntax

# Each name is a valid audio file: it must be indexed under exactly this name, read as a
# path, and never run by a shell or expanded as a glob (the cwd is checked for the files
# the commands would make).
HOSTILE_NAMES = {
    "command_substitution": "$(touch pwned_subst).wav",
    "backticks": "`touch pwned_backtick`.wav",
    "command_separator": "a; touch pwned_semicolon;.wav",
    "pipes_and_redirects": "|touch pwned_pipe > x|.wav",
    "newline_and_tab": "new\nline\tand tab.wav",
    "glob_characters": "[ab]*?{c,d}.wav",
    "leading_dash": "-rf --no-preserve-root.wav",
    "spaces_quotes_and_backslash": "it's  \"quoted\" \\ spaced.wav",
    "unicode_and_emoji": "ünïcödé 语音 🎙.wav",
    "hash_and_percent": "#frag%20ment.wav",
}


def test_file_names_that_are_shell_or_glob_syntax_are_paths_never_commands(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    folder = tmp_path / "pool"
    folder.mkdir()
    for i, name in enumerate(HOSTILE_NAMES.values()):
        (folder / name).write_bytes(_bytes(_noise(seed=i), "WAV"))
    items, rejects = index_pool("noise", AudioPool(paths=["pool/*"]), tmp_path)
    assert rejects == []
    assert sorted(items.items) == sorted(f"pool/{name}" for name in HOSTILE_NAMES.values())
    assert all(d > 0.99 for d in items.duration_s)
    # the same names in a manifest are paths as written: no glob, no shell
    manifest = folder / "m.jsonl"
    manifest.write_text("".join(json.dumps({"path": name}) + "\n" for name in HOSTILE_NAMES.values()))
    listed, rejects = index_pool("noise", AudioPool(manifest="pool/m.jsonl"), tmp_path)
    assert listed.items == items.items and rejects == []
    assert not list(tmp_path.rglob("pwned*")) and not list(Path("/tmp").glob("pwned_*"))


def test_a_file_name_that_is_not_utf8_is_a_reject_and_the_run_writes_its_index(tmp_path):
    # b"caf\xe9" is Latin-1 "café": Python holds it as a lone surrogate, which Arrow, JSON
    # and UTF-8 text cannot store; the run died writing pool_index.parquet
    img = tmp_path / "img"
    img.mkdir()
    (img / "good.png").write_bytes(_pillow(_photo(), "PNG"))
    (img / os.fsdecode(b"caf\xe9.png")).write_bytes(_pillow(_photo(), "PNG"))
    images, image_rejects = INDEXERS["image"]("photos", ImagePool(kind="image", paths=["img/*.png"]), tmp_path, None)
    noise = tmp_path / "noise"
    _good_files(noise)
    (noise / os.fsdecode(b"bruit_\xe9t\xe9.wav")).write_bytes(_wav())
    audio, audio_rejects = index_pool("noise", AudioPool(paths=["noise/*.wav"]), tmp_path)
    assert images.items == ["img/good.png"] and len(audio.items) == 3
    reason = "file name is not valid UTF-8; rename it"
    assert [(r["path"], r["reason"][: len(reason)]) for r in image_rejects + audio_rejects] == [
        (f"{img}/caf\\xe9.png", reason), (f"{noise}/bruit_\\xe9t\\xe9.wav", reason)]
    # the reject and the index are written as UTF-8 text
    recipe = load_recipe(_tiny_recipe(tmp_path / "run", {"n.wav": _wav()}))
    index = index_pools(recipe)
    index.rejects.extend(audio_rejects)
    sink, _ = _write(recipe, index, tmp_path / "out")
    assert sink.on_write_complete(index.rejects)["status"] == "complete"
    assert _rejects(tmp_path / "out") == {"bruit_\\xe9t\\xe9.wav": audio_rejects[0]["reason"]}


# --------------------------------------------------------------------------- manifests

# A manifest row that cannot be used is a reject naming the row's file; the good rows are
# kept. kind -> (the row's path, the reject's path relative to the manifest's folder or
# absolute, words of its reason)
MANIFEST_ROWS = {
    "a_folder": ("a_folder.wav", "a_folder.wav", "is a directory, not an audio file"),
    "absolute_path_to_a_missing_file": ("/nonexistent/shardsmith/a.wav", "/nonexistent/shardsmith/a.wav",
                                        "file not found"),
    "parent_folders_to_etc_passwd": ("../" * 30 + "etc/passwd", "/etc/passwd", "the content looks like text"),
    "a_device": ("/dev/zero", "/dev/zero", "not a regular file"),
    "a_glob_is_not_expanded": ("ok*.wav", "ok*.wav", "file not found"),
    "shell_syntax_is_not_run": ("ok1.wav; touch pwned_row", "ok1.wav; touch pwned_row", "file not found"),
    "a_file_uri_is_a_relative_name": ("file:///etc/passwd", "file:/etc/passwd", "file not found"),
    "an_unknown_uri_scheme": ("foo://bucket/a.wav", "foo://bucket/a.wav", "cannot open this location"),
    # pyarrow's GCS client waited minutes for cloud metadata: refused by its scheme at once
    "a_gcs_uri": ("gs://nonexistent-bucket/x.wav", "gs://nonexistent-bucket/x.wav",
                  "cannot open this location (gs:// is not supported; shardsmith reads and writes local paths "
                  "and s3:// URIs"),
    "spaces_around_a_missing_name": (" nope.wav ", " nope.wav ", "file not found: tried ' nope.wav ' as written and "
                                                                 "'nope.wav' without the spaces around it"),
    "a_nul_byte_in_a_path": ("ok\x00.wav", "m.csv#row2", "the path holds a NUL byte ('ok\\x00.wav'), which no file "
                                                          "name can"),
    "the_same_file_spelled_differently": ("a_folder.wav/../ok0.wav", "ok0.wav", "listed twice in m.csv (rows 1 and"),
}


@pytest.mark.parametrize("kind", MANIFEST_ROWS)
def test_a_manifest_row_that_cannot_be_used_is_a_reject_naming_it(tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    _good_files(tmp_path)
    (tmp_path / "a_folder.wav").mkdir()
    row, shown, words = MANIFEST_ROWS[kind]
    remote = "://" in row and not row.startswith("file:")  # a pool is local or on a store: a URI row comes alone
    (tmp_path / "m.csv").write_text("path\n" + ("" if remote else "ok0.wav\n") + f'"{row}"\n')
    started = time.perf_counter()
    items, rejects = index_pool("speech", AudioPool(manifest="m.csv"), tmp_path)
    assert time.perf_counter() - started < 5
    assert items.items == ([] if remote else ["ok0.wav"])
    assert len(rejects) == 1
    where = shown if shown.startswith("/") or "://" in shown else str(tmp_path / shown)
    assert rejects[0]["path"] == where and words in rejects[0]["reason"], rejects[0]
    assert not list(tmp_path.rglob("pwned*"))


def _parquet(table) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _manifest_errors() -> dict[str, tuple[str, bytes | None, str]]:
    """A manifest that cannot be read at all stops the run with an InputError naming the
    file: kind -> (file name, its bytes (None: a folder of that name), words of the message)."""
    import pyarrow as pa

    full = _parquet(pa.table({"path": ["ok0.wav", "ok1.wav"] * 50, "text": ["words " * 20] * 100}))
    return {
        "a_folder_named_like_a_manifest": ("m.csv", None, "is a folder, not a manifest file"),
        "zero_byte_csv": ("m.csv", b"", "cannot read manifest: Empty CSV file"),
        "semicolon_separated_csv": ("m.csv", b"path;text\nok0.wav;a\n", "no 'path' column (columns: path;text)"),
        "tab_separated_csv": ("m.csv", b"path\ttext\nok0.wav\ta\n", "no 'path' column (columns: path\ttext)"),
        "capitalised_path_column": ("m.csv", b"Path,text\nok0.wav,a\n", "no 'path' column (columns: Path, text)"),
        "padded_path_column": ("m.csv", b" path ,text\nok0.wav,a\n", "no 'path' column (columns:  path , text)"),
        "truncated_parquet": ("m.parquet", full[: len(full) // 2], "Parquet magic bytes not found in footer"),
        "zero_byte_parquet": ("m.parquet", b"", "Parquet file size is 0 bytes"),
        "parquet_without_rows": ("m.parquet", _parquet(pa.table({"path": pa.array([], pa.string())})),
                                 "manifest lists no files"),
        "csv_content_named_parquet": ("m.parquet", b"path\nok0.wav\n", "Parquet magic bytes not found"),
        "zero_byte_jsonl": ("m.jsonl", b"", "cannot read manifest: Empty JSON file"),
        "jsonl_line_that_is_not_an_object": ("m.jsonl", b'{"path": "ok0.wav"}\n[1, 2, 3]\n',
                                             "cannot read manifest: JSON parse error"),
        "jsonl_trailing_garbage": ("m.jsonl", b'{"path": "ok0.wav"}\n{"path": "ok1.wav"} and more\n',
                                   "cannot read manifest: JSON parse error"),
        "a_column_without_a_name": ("m.csv", b"path,,text\nok0.wav,x,a\n",
                                    "the header line names no column at position 2 (of 3 columns)"),
        # pyarrow read these as floats (1.2345678901234568e+29, nan): a label silently changed
        "jsonl_integer_past_int64": ("m.jsonl", b'{"path": "ok0.wav", "id": 1}\n'
                                                b'{"path": "ok1.wav", "id": 123456789012345678901234567890}\n',
                                     "line 2, column 'id': 123456789012345678901234567890 is an integer too large "
                                     "for a 64-bit column (it would be rounded to a float); quote it to keep it as text"),
        "jsonl_bare_nan": ("m.jsonl", b'{"path": "ok0.wav", "score": {"snr": NaN}}\n',
                           "line 1, column 'score.snr': NaN is not a JSON number (NaN and Infinity are not JSON); "
                           'quote it to keep it as text ("NaN")'),
        "jsonl_key_twice_in_a_line": ("m.jsonl", b'{"path": "ok0.wav", "path": "ok1.wav"}\n',
                                      "Column(/path) was specified twice"),
        "jsonl_label_changing_type": ("m.jsonl", b'{"path": "ok0.wav", "n": 1}\n{"path": "ok1.wav", "n": "x"}\n',
                                      "Column(/n) changed from number to string"),
    }


MANIFEST_ERRORS = list(_manifest_errors())


@pytest.mark.parametrize("kind", MANIFEST_ERRORS)
def test_a_manifest_that_cannot_be_read_is_an_input_error_naming_it(tmp_path, kind):
    name, contents, words = _manifest_errors()[kind]
    _good_files(tmp_path)
    if contents is None:
        (tmp_path / name).mkdir()
    else:
        (tmp_path / name).write_bytes(contents)
    with pytest.raises(InputError) as info:
        index_pool("speech", AudioPool(manifest=name), tmp_path)
    message = str(info.value)
    assert message.startswith(str(tmp_path / name)), message
    assert words in message, message


# Rows that look odd but are fine: kind -> (manifest name, bytes, items, labels)
UNUSUAL_MANIFESTS = {
    "byte_order_mark": ("m.csv", "\ufeffpath,text\nok0.wav,a\n".encode(), ["ok0.wav"], [{"text": "a"}]),
    "windows_line_ends": ("m.csv", b"path,text\r\nok0.wav,a\r\nok1.wav,b\r\n", ["ok0.wav", "ok1.wav"],
                          [{"text": "a"}, {"text": "b"}]),
    "quoted_line_break_in_a_label": ("m.csv", b'path,text\n"ok0.wav","one\ntwo"\n', ["ok0.wav"],
                                     [{"text": "one\ntwo"}]),
    "blank_lines_in_jsonl": ("m.jsonl", b'{"path": "ok0.wav"}\n\n\n{"path": "ok1.wav"}\n', ["ok0.wav", "ok1.wav"], []),
    # CSV and TSV hold text: labels are carried as written, never read as numbers or nulls
    "labels_that_look_like_numbers": ("m.csv", b"path,speaker,n,ok\nok0.wav,007,1e3,true\nok1.wav,-0,0x1F,NaN\n",
                                      ["ok0.wav", "ok1.wav"], [{"speaker": "007", "n": "1e3", "ok": "true"},
                                                               {"speaker": "-0", "n": "0x1F", "ok": "NaN"}]),
    "na_and_empty_cells_in_a_tsv": ("m.tsv", b"path\tspeaker\tage\nok0.wav\tNA\t\nok1.wav\tN/A\tnull\n",
                                    ["ok0.wav", "ok1.wav"], [{"speaker": "NA", "age": ""}, {"speaker": "N/A", "age": "null"}]),
    "paths_that_look_like_numbers": ("m.csv", b"path\n1\n2\n", ["1", "2"], []),
    # a name may begin with a space; spaces a spreadsheet put around a name are dropped
    # only when the name as written is no file
    "a_name_beginning_with_a_space": ("m.csv", b'path\n" ok1.wav"\nok1.wav\n', [" ok1.wav", "ok1.wav"], []),
    "spaces_around_a_name": ("m.csv", b'path\n"  ok0.wav "\n', ["ok0.wav"], []),
}


@pytest.mark.parametrize("kind", UNUSUAL_MANIFESTS)
def test_unusual_but_valid_manifests_are_read_as_meant(tmp_path, kind):
    name, contents, expected_items, expected_labels = UNUSUAL_MANIFESTS[kind]
    _good_files(tmp_path)
    for i in (1, 2):  # audio files named like numbers, without an extension
        (tmp_path / str(i)).write_bytes((tmp_path / f"ok{i}.wav").read_bytes())
    (tmp_path / " ok1.wav").write_bytes((tmp_path / "ok1.wav").read_bytes())
    (tmp_path / name).write_bytes(contents)
    items, rejects = index_pool("speech", AudioPool(manifest=name), tmp_path)
    assert (items.items, items.labels, rejects) == (expected_items, expected_labels, [])


def _path_types() -> dict[str, tuple[str, bytes, str]]:
    """A path cell that is not text: kind -> (manifest name, bytes, words of the reject)."""
    import pyarrow as pa

    return {
        "a_number": ("m.jsonl", b'{"path": 7}\n', "the path is a number (7), not text; write the file's path as a string"),
        "a_list": ("m.jsonl", b'{"path": ["ok0.wav"]}\n', "the path is a list (['ok0.wav']), not text"),
        "an_object": ("m.jsonl", b'{"path": {"file": "ok0.wav"}}\n', "the path is an object ({'file': 'ok0.wav'})"),
        "binary_in_parquet": ("m.parquet", _parquet(pa.table({"path": pa.array([b"ok0.wav"], pa.binary())})),
                              "the path is binary data (b'ok0.wav'), not text"),
    }


PATH_TYPES = list(_path_types())


@pytest.mark.parametrize("kind", PATH_TYPES)
def test_a_path_that_is_not_text_is_a_reject_naming_its_type(tmp_path, kind):
    name, contents, words = _path_types()[kind]
    _good_files(tmp_path)
    (tmp_path / name).write_bytes(contents)
    items, rejects = index_pool("speech", AudioPool(manifest=name), tmp_path)
    assert items.items == [] and len(rejects) == 1
    assert rejects[0]["path"] == f"{tmp_path / name}#row1" and words in rejects[0]["reason"], rejects[0]


# paths: [...] patterns that match nothing usable stop the run naming the field.
# kind -> (pattern, words of the message)
PATTERN_ERRORS = {
    "a_glob_matching_nothing": ("noise/*.flac", "pools.noise.paths[0]: 'noise/*.flac' matches no files"),
    "a_glob_matching_only_a_folder": ("noise/folder.wav", "pools.noise.paths[0]: 'noise/folder.wav' matches no files"),
    "an_unknown_uri_scheme": ("foo://bucket/*.wav", "foo://bucket/*.wav: cannot open this location"),
    "an_http_url": ("http://127.0.0.1:9/noise/*.wav", "cannot open this location (http:// is not supported"),
    "a_gcs_glob": ("gs://nonexistent-bucket/noise/*.wav",
                   "gs://nonexistent-bucket/noise/*.wav: cannot open this location (gs:// is not supported; "
                   "shardsmith reads and writes local paths and s3:// URIs; for an S3-compatible store"),
}


@pytest.mark.parametrize("kind", PATTERN_ERRORS)
def test_a_pattern_that_matches_nothing_usable_is_an_input_error_naming_the_field(tmp_path, kind):
    pattern, words = PATTERN_ERRORS[kind]
    (tmp_path / "noise" / "folder.wav").mkdir(parents=True)
    started = time.perf_counter()
    with pytest.raises(InputError) as info:
        index_pool("noise", AudioPool(paths=[pattern]), tmp_path)
    assert time.perf_counter() - started < 5
    assert words in str(info.value), str(info.value)


def test_a_manifest_mixing_local_files_and_uris_is_refused(tmp_path):
    _good_files(tmp_path)
    (tmp_path / "m.csv").write_text("path\nok0.wav\nhttp://127.0.0.1:9/x.wav\n")
    with pytest.raises(InputError, match="lists both local files and object-store URIs; keep each pool in one place"):
        index_pool("speech", AudioPool(manifest="m.csv"), tmp_path)


# --------------------------------------------------------------------------- images


def _png_chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny 1-bit grayscale PNG whose header declares ``width`` x ``height`` pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(bytes(100)))
            + _png_chunk(b"IEND", b""))


def _pillow(array: np.ndarray, fmt: str, mode: str | None = None, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _frames(fmt: str, n: int = 3) -> bytes:
    """An image file of ``n`` frames (an animated GIF, PNG or WebP) or pages (a TIFF)."""
    from PIL import Image

    rng = np.random.default_rng(2)
    frames = [Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)) for _ in range(n)]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:])
    return buf.getvalue()


def _photo() -> np.ndarray:
    return (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)


def hostile_images(folder: Path) -> dict[str, str]:
    """One file of each hostile image kind; returns {file name: words its reason must contain}."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    img = _photo()
    png, jpg = cv2.imencode(".png", img)[1].tobytes(), cv2.imencode(".jpg", img)[1].tobytes()
    webp = cv2.imencode(".webp", img)[1].tobytes()
    idat = png.find(b"IDAT")
    idat_len = struct.unpack(">I", png[idat - 4: idat])[0]
    files = {
        "decompression_bomb.png": (_png_declaring(100_000, 100_000),
                                   "oversized: the header declares 10,000,000,000 pixels"),
        "two_gigapixel_line.png": (_png_declaring(2**31 - 1, 1), "oversized: the header declares 2,147,483,647 pixels"),
        "header_crc_wrong.png": (png[:29] + b"\x00\x00\x00\x00" + png[33:], "corrupt png data"),
        "data_crc_wrong.png": (png[: idat + 4 + idat_len] + bytes(4) + png[idat + 8 + idat_len:], "corrupt png data"),
        "one_pixel_byte_flipped.png": (png[: idat + 4 + idat_len // 2] + bytes([png[idat + 4 + idat_len // 2] ^ 0xFF])
                                       + png[idat + 5 + idat_len // 2:], "corrupt png data"),
        "no_iend.png": (png[:-12], "truncated png file"),
        "jpeg_start_marker_only.jpg": (b"\xff\xd8\xff", "truncated jpeg file"),
        "jpeg_without_end_marker.jpg": (jpg[:-2], "truncated jpeg file"),
        "truncated.webp": (webp[:100], "truncated webp file"),
        "svg_named.png": (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                          b'<rect width="10" height="10"/></svg>', "not an image: the .png name promises png"),
        "photoshop_named.png": (b"8BPS" + bytes(100), "not an image: the .png name promises png"),
        "heic.heic": (b"\x00\x00\x00\x18ftypheic" + bytes(100), "not an image"),
        "int32_pixels.tiff": (_pillow((np.arange(100).reshape(10, 10) * 1000).astype(np.int32), "TIFF"),
                              "unsupported pixel type int32"),
        "zero_by_zero.png": (_png_declaring(0, 0), "empty image: the png header declares 0×0 pixels"),
        "icon.ico": (_pillow(img[:32, :32], "ICO"), "ico image: a format opencv (which decodes every image here) "
                                                    "cannot read; convert it to png"),
        # several images in one file: a worker would silently take the first
        "animated.gif": (_frames("GIF"), "3 frames (an animation) in one gif file; shardsmith reads single images"),
        "animated_png.png": (_frames("PNG"), "3 frames (an animation) in one png file"),
        "animated.webp": (_frames("WEBP"), "3 frames (an animation) in one webp file"),
        "three_pages.tiff": (_frames("TIFF"), "3 pages in one tiff file; shardsmith reads single images, and would "
                                              "use only the first: extract the frames"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    (folder / "folder.png").mkdir()
    expected = {name: words for name, (_, words) in files.items()}
    # not files at all (both have size 0: they were "empty files")
    os.mkfifo(folder / "fifo.png")
    os.symlink("/dev/zero", folder / "link_to_dev_zero.png")
    expected["fifo.png"] = expected["link_to_dev_zero.png"] = "not a regular file (a fifo, socket or device)"
    return expected


def test_every_hostile_image_kind_is_rejected_with_its_reason(tmp_path):
    expected = hostile_images(tmp_path / "img")
    (tmp_path / "img" / "m.csv").write_text("path\n" + "".join(f"{n}\n" for n in [*expected, "folder.png"]))
    started = time.perf_counter()
    items, rejects = INDEXERS["image"]("photos", ImagePool(kind="image", manifest="img/m.csv", max_pixels=4_000_000),
                                       tmp_path, None)
    assert time.perf_counter() - started < 10  # no bomb is decoded
    assert items.items == []
    reasons = _reasons(rejects)
    assert set(reasons) == {*expected, "folder.png"}
    for name, words in expected.items():
        assert words in reasons[name], (name, reasons[name])
    assert reasons["folder.png"] == "is a directory, not an image file"


def unusual_images(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Valid images in rare forms; returns {file name: (width, height, channels in the file)}."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    img = _photo()
    deep = (np.random.default_rng(1).random((20, 30, 4)) * 65535).astype(np.uint16)
    files = {
        "sixteen_bit.png": (cv2.imencode(".png", deep[:, :, :3])[1].tobytes(), (30, 20, 3)),
        "sixteen_bit_rgba.png": (cv2.imencode(".png", deep)[1].tobytes(), (30, 20, 4)),
        "cmyk.jpg": (_cmyk_jpeg(img), (80, 60, 4)),
        "gray_and_alpha.png": (_pillow(np.dstack([img[:, :, 0], img[:, :, 1]]), "PNG", "LA"), (80, 60, 2)),
        "gray_and_alpha.tiff": (_pillow(np.dstack([img[:, :, 0], img[:, :, 1]]), "TIFF", "LA"), (80, 60, 2)),
        "jpeg_named.png": (cv2.imencode(".jpg", img)[1].tobytes(), (80, 60, 3)),
        "png_named.jpg": (cv2.imencode(".png", img)[1].tobytes(), (80, 60, 3)),
        "bytes_after_the_end.jpg": (cv2.imencode(".jpg", img)[1].tobytes() + b"trailing" * 100, (80, 60, 3)),
        "bytes_after_iend.png": (cv2.imencode(".png", img)[1].tobytes() + b"trailing" * 100, (80, 60, 3)),
        "single_frame.gif": (_pillow(img, "GIF"), (80, 60, 3)),
        # a JPEG carrying a second picture (a phone's depth map or preview) is one photo
        "two_pictures_mpo.jpg": (_mpo(img), (80, 60, 3)),
        "bitmap.bmp": (cv2.imencode(".bmp", img)[1].tobytes(), (80, 60, 3)),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: size for name, (_, size) in files.items()}


def _mpo(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "MPO", save_all=True, append_images=[Image.fromarray(img[::-1])])
    return buf.getvalue()


def _cmyk_jpeg(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).convert("CMYK").save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_unusual_but_valid_images_are_indexed_and_decoded_as_meant(tmp_path):
    from PIL import Image

    from engine.image.io import read_image

    expected = unusual_images(tmp_path / "img")
    items, rejects = INDEXERS["image"]("photos", ImagePool(kind="image", paths=["img/*"], mode="rgba"), tmp_path, None)
    assert rejects == []
    assert items.items == sorted(f"img/{name}" for name in expected)
    for i, item in enumerate(items.items):
        assert (items.width[i], items.height[i], items.channels[i]) == expected[item.removeprefix("img/")], item
    folder = tmp_path / "img"
    # CMYK is converted to the colours Pillow gives (within rounding); gray + alpha keeps its alpha
    cmyk = read_image(str(folder / "cmyk.jpg"), "rgb").astype(int)
    assert np.abs(cmyk - np.asarray(Image.open(folder / "cmyk.jpg").convert("RGB"), int)).max() <= 1
    for name in ("gray_and_alpha.png", "gray_and_alpha.tiff"):  # OpenCV reads only the gray of the TIFF
        gray_alpha = read_image(str(folder / name), "rgba")
        source = np.asarray(Image.open(folder / name))
        assert np.array_equal(gray_alpha[:, :, 0], source[:, :, 0]), name
        assert np.array_equal(gray_alpha[:, :, 3], source[:, :, 1]), name
        assert np.array_equal(read_image(str(folder / name), "gray"), source[:, :, 0]), name
    deep = read_image(str(folder / "sixteen_bit_rgba.png"), "rgba")
    assert deep.dtype == np.uint8 and deep.shape == (20, 30, 4)


# --------------------------------------------------------------------------- recipe texts

RECIPE = """name: t_hostile
seed: 7
pools:
  speech: {paths: ['speech/*.wav']}
  cabin: {paths: ['car/*.wav'], holdout: 0.2}
splits:
  train: {samples: 10}
synth:
  type: speech_noise_mix
  speech: speech
  noise: [{pool: cabin, snr_db_range: [0, 20]}]
"""


def _edit(old: str, new: str):
    assert old in RECIPE
    return lambda text: text.replace(old, new, 1)


# kind -> (how the text is changed, words the RecipeError must contain after the file's name)
RECIPE_TEXTS = {
    # YAML itself
    "a_key_twice_at_the_top": (lambda t: t + "seed: 8\n", "not valid YAML at line 12, column 1: duplicate key 'seed'"),
    "a_pool_defined_twice": (_edit("  cabin:", "  speech: {paths: ['x/*.wav']}\n  cabin:"),
                             "not valid YAML at line 5, column 3: duplicate key 'speech'"),
    "two_yaml_documents": (lambda t: t + "---\n" + t,
                           "not valid YAML at line 12, column 1: but found another document"),
    "tab_indentation": (_edit("  speech: {paths", "\tspeech: {paths"),
                        "not valid YAML at line 4, column 1: found character '\\t' that cannot start any token"),
    "a_nul_character": (_edit("name: t_hostile", "name: t_host\x00ile"), "unacceptable character #x0000"),
    "a_merge_of_a_list": (_edit("train: {samples: 10}", "train: {<<: [1, 2], samples: 10}"),
                          "line 7, column 16: expected a mapping for merging, but found scalar"),
    "an_undefined_alias": (_edit("[0, 20]", "*nope"), "line 11, column 39: found undefined alias 'nope'"),
    "a_custom_tag_on_a_key": (_edit("name: t_hostile", "!shell name: t_hostile"),
                              "line 1, column 1: the YAML tag !shell makes a value that is not plain data"),
    # numbers
    "nan_samples": (_edit("samples: 10", "samples: .nan"),
                    "splits.train.samples: input should be a finite number, got nan"),
    "nan_holdout": (_edit("holdout: 0.2", "holdout: .nan"), "pools.cabin.holdout: input should be a finite number, got nan"),
    # .inf passed `ge=0` and meant "no limit" by accident
    "infinite_minimum_duration": (_edit("holdout: 0.2", "holdout: 0.2, min_duration_s: .inf"),
                                  "pools.cabin.min_duration_s: input should be a finite number, got inf"),
    "infinite_guard": (lambda t: t + "guards: {max_reuse_factor: .inf}\n",
                       "guards.max_reuse_factor: input should be a finite number, got inf"),
    "a_seed_of_5000_digits": (_edit("seed: 7", "seed: " + "9" * 5000),
                              "seed: input should be less than 9223372036854775808, got <an integer of about 5000 digits>"),
    "more_channels_than_readable": (_edit("holdout: 0.2", "holdout: 0.2, max_channels: 9"),
                                    "pools.cabin.max_channels: at most 8, got 9: a file of more than 8 channels is "
                                    "rejected when its pool is indexed"),
    "infinite_seed": (_edit("seed: 7", "seed: .inf"), "seed: input should be a finite number, got inf"),
    "infinite_snr_range": (_edit("[0, 20]", "[-.inf, .inf]"),
                           "synth.noise[0].snr_db_range: expected values within [-40, 100] (SNR in dB), "
                           "got [-inf, inf]"),
    "samples_above_ten_billion": (_edit("samples: 10", "samples: 10000000001"),
                                  "splits.train.samples: input should be less than or equal to 10000000000"),
    "no_channels_allowed": (_edit("holdout: 0.2", "holdout: 0.2, max_channels: 0"),
                            "pools.cabin.max_channels: input should be greater than or equal to 1, got 0"),
    "negative_minimum_duration": (_edit("holdout: 0.2", "holdout: 0.2, min_duration_s: -1"),
                                  "pools.cabin.min_duration_s: input should be greater than or equal to 0, got -1"),
    # names that would be paths
    "a_name_climbing_folders": (_edit("name: t_hostile", "name: ../../evil"),
                                "name: string should match pattern"),
    "a_split_climbing_folders": (_edit("  train: {samples: 10}", "  train: {samples: 10}\n  ../../x: {samples: 1}"),
                                 "splits: split name '../../x' must be lower-case letters"),
    "a_pool_climbing_folders": (_edit("  cabin:", "  ../etc: {paths: ['x/*.wav']}\n  cabin:"),
                                "pools: pool name '../etc' must match"),
    # paths of the wrong shape
    "paths_as_one_string": (_edit("paths: ['car/*.wav']", "paths: 'car/*.wav'"),
                            "pools.cabin.paths: input should be a valid list, got 'car/*.wav'"),
    "paths_of_an_empty_string": (_edit("paths: ['car/*.wav']", "paths: ['']"),
                                 "pools.cabin.paths: expected a non-empty list of glob patterns, got ['']"),
    "an_empty_manifest": (_edit("paths: ['car/*.wav']", "manifest: ''"),
                          "pools.cabin.manifest: expected the path of a file or folder, got ''"),
    "paths_with_a_null": (_edit("paths: ['car/*.wav']", "paths: [null]"),
                          "pools.cabin.paths[0]: input should be a valid string, got None"),
    # aliases of aliases ("billion laughs"): 10**9 values from 300 bytes; refused from the
    # composed nodes, before anything walks the expansion
    "aliases_expanding_to_a_billion_values": (lambda t: t + _laughs(9),
                                              "its YAML aliases (*name) expand too far: more than 100,000 values"),
}


def _laughs(levels: int) -> str:
    """``levels`` levels of YAML anchors, each a list of ten aliases of the one before."""
    lines = ["laugh0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"laugh{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("kind", RECIPE_TEXTS)
def test_a_hostile_recipe_text_is_a_recipe_error_naming_the_line_or_field(tmp_path, kind):
    change, words = RECIPE_TEXTS[kind]
    path = tmp_path / "r.yaml"
    path.write_text(change(RECIPE))
    started = time.perf_counter()
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert time.perf_counter() - started < 5
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert words in message, message


def test_max_channels_allows_what_the_probe_reads():
    from engine.audio.io import MAX_CHANNELS
    from engine.config import READABLE_CHANNELS

    assert READABLE_CHANNELS == MAX_CHANNELS
    assert AudioPool(paths=["*.wav"], max_channels=MAX_CHANNELS).max_channels == MAX_CHANNELS


# Recipe texts that look odd but are fine: kind -> text
UNUSUAL_RECIPES = {
    "byte_order_mark": "\ufeff" + RECIPE,
    "windows_line_ends": RECIPE.replace("\n", "\r\n"),
    # an anchor used twice, and a merge of an anchored mapping
    "anchors_and_aliases": RECIPE.replace("  speech: {paths: ['speech/*.wav']}",
                                          "  speech: &pool {paths: ['speech/*.wav']}\n  other: {<<: *pool, holdout: 0.1}")
                                 .replace("[0, 20]", "&snr [0, 20]}, {pool: other, snr_db_range: *snr"),
}


@pytest.mark.parametrize("kind", UNUSUAL_RECIPES)
def test_unusual_but_valid_recipe_texts_load(tmp_path, kind):
    path = tmp_path / "r.yaml"
    path.write_bytes(UNUSUAL_RECIPES[kind].encode())
    recipe = load_recipe(path)
    assert (recipe.name, recipe.seed, recipe.splits["train"].samples) == ("t_hostile", 7, 10)


# --------------------------------------------------------------------------- runs


def _tiny_recipe(root: Path, noise: dict[str, bytes], samples: int = 16, per_shard: int = 8) -> Path:
    """A speech_noise_mix recipe over three 1.5 s tones and the given noise files (no demo corpus)."""
    (root / "speech").mkdir(parents=True)
    for i, hz in enumerate((220, 330, 440)):
        t = np.arange(int(1.5 * SR)) / SR
        sf.write(root / "speech" / f"s{i}.wav", (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32), SR)
    (root / "noise").mkdir()
    for name, data in noise.items():
        (root / "noise" / name).write_bytes(data)
    return write_recipe(root / "r.yaml", {
        "name": "t_hostile", "seed": 3,
        "output": {"format": "arrow", "samples_per_shard": per_shard, "audio_codec": "flac"},
        "pools": {"speech": {"paths": ["speech/*.wav"]}, "noise": {"paths": ["noise/*"]}},
        "splits": {"train": {"samples": samples}},
        "synth": {"type": "speech_noise_mix", "speech": "speech",
                  "noise": [{"pool": "noise", "snr_db_range": [0, 10]}]},
        "guards": {"max_reuse_factor": 1000},  # three short tones serve every sample
    })


def _write(recipe, index, out: Path, shards: slice = slice(None)) -> tuple[OutputSink, list[str]]:
    """What runtime.run does, without Ray: the shards still to do (those in ``shards``),
    one after another in this process, through the output's sink."""
    sink = OutputSink(out, recipe, make_plan(recipe))
    sink.on_write_start(overwrite=False)
    try:
        sink.record_pools(index)
        todo = [spec for spec, _ in sink.reopen(sink.resume_state(sink.listing()))][shards]
        for spec in todo:
            make_shard(recipe, index, spec, out)
    finally:
        sink.release()  # the run ends here (runtime.run releases its lease on every way out)
    return sink, [spec.name for spec in todo]


def _rejects(out: Path) -> dict[str, str]:
    lines = (out / "rejects.jsonl").read_text().splitlines()
    return {Path(r["path"]).name: r["reason"] for r in map(json.loads, lines)}


def _noise_used(out: Path, first_shard: int = 0) -> set[str]:
    """The names of the noise items the rows of the shards (from ``first_shard`` on) used."""
    shards = sorted(out.glob("train/*.arrow"))  # also before the run record lists them
    return {Path(s["item"]).name for f in shards[first_shard:] for r in read_shard(f).to_pylist()
            for s in r["sources"] if s["pool"] == "noise"}


def test_a_run_over_hostile_names_uses_them_as_paths_and_lists_junk_as_rejects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = {name: _bytes(_noise(seed=i), "WAV") for i, name in enumerate(HOSTILE_NAMES.values())}
    junk = {"html_error_page.wav": b"<html><body>502 Bad Gateway</body></html>\n",
            "gzip_of_a_wav.wav": gzip.compress(_wav()), "rate_999hz.wav": _patched(_wav(), 24, "<I", 999)}
    recipe = load_recipe(_tiny_recipe(tmp_path, {**good, **junk}, samples=64, per_shard=16))
    os.symlink("/dev/urandom", tmp_path / "noise" / "link_to_dev_urandom.wav")
    out = tmp_path / "out"
    sink, written = _write(recipe, index_pools(recipe), out)
    assert sink.on_write_complete(index_pools(recipe).rejects)["status"] == "complete" and len(written) == 4
    rejects = _rejects(out)
    assert set(rejects) == {*junk, "link_to_dev_urandom.wav"}
    assert "the content looks like text" in rejects["html_error_page.wav"]
    assert "not an audio file" in rejects["gzip_of_a_wav.wav"]
    assert "sample rate 999 Hz" in rejects["rate_999hz.wav"]
    assert "not a regular file" in rejects["link_to_dev_urandom.wav"]
    used = _noise_used(out)
    assert used == set(good)  # every name as it is: newlines, `$(...)`, globs...
    assert not list(tmp_path.rglob("pwned*"))


def test_a_source_turned_to_junk_while_a_run_is_written_stops_it_naming_the_file_and_earlier_shards_are_untouched(
    tmp_path,
):
    from engine.errors import SourceChangedError

    noise = {"n0.wav": _bytes(_noise(seed=0), "WAV"), "n1.wav": _bytes(_noise(seed=1), "WAV")}
    recipe = load_recipe(_tiny_recipe(tmp_path, noise, samples=24))
    index = index_pools(recipe)
    out = tmp_path / "out"
    _, first = _write(recipe, index, out, slice(0, 1))
    assert _noise_used(out) == {"n0.wav", "n1.wav"}
    before = digests(out)
    (tmp_path / "noise" / "n1.wav").write_bytes(b"<html><body>moved to cold storage</body></html>\n")
    # The index is the one taken before: the worker finds the file is not the one it validated.
    with pytest.raises(SourceChangedError, match=r"n1\.wav: changed after its pool was indexed \(size \d+ -> 48 bytes\)"):
        _write(recipe, index, out)
    after = digests(out)
    assert after == before  # the first shard as it was, and no shard with a row from the junk


def test_a_source_turned_to_junk_before_a_resume_is_refused_and_nothing_is_changed(tmp_path):
    noise = {"n0.wav": _bytes(_noise(seed=0), "WAV"), "n1.wav": _bytes(_noise(seed=1), "WAV"),
             "n2.wav": _bytes(_noise(seed=2), "WAV")}
    recipe = load_recipe(_tiny_recipe(tmp_path, noise))
    out = tmp_path / "out"
    sink, _ = _write(recipe, index_pools(recipe), out)
    sink.on_write_complete([])
    shard_files(out)[-1].unlink()  # an interrupted run: one shard still to write
    kept = {p.relative_to(out).as_posix(): _sha(p) for p in out.rglob("*") if p.is_file() and p.name != "run.json"}
    (tmp_path / "noise" / "n1.wav").write_bytes(gzip.compress(b"not audio"))
    index = index_pools(recipe)
    assert "not an audio file" in index.rejects[0]["reason"]
    with pytest.raises(ShardError, match=r"source pools changed since this output was started \(pool 'noise': "
                                         r"0 item\(s\) added, 1 removed\)"):
        _write(recipe, index, out)
    after = {p.relative_to(out).as_posix(): _sha(p) for p in out.rglob("*") if p.is_file() and p.name != "run.json"}
    assert after == kept


@pytest.mark.ray
def test_a_whole_run_over_hostile_names_and_junk_completes_and_runs_nothing(ray_local, tmp_path, monkeypatch):
    from engine.runtime import run

    monkeypatch.chdir(tmp_path)
    good = {name: _bytes(_noise(seed=i), "WAV") for i, name in enumerate(HOSTILE_NAMES.values())}
    recipe_path = _tiny_recipe(tmp_path, good, samples=64, per_shard=16)
    expected = hostile_audio(tmp_path / "noise")
    out = tmp_path / "out"
    summary = run(load_recipe(recipe_path), out, progress=False, log=lambda _: None)
    assert summary.status == "complete" and summary.samples == 64
    rejects = _rejects(out)
    assert set(rejects) == set(expected)
    for name, words in expected.items():
        assert words in rejects[name].lower(), (name, rejects[name])
    assert _noise_used(out) == set(good)
    assert json.loads((out / "coverage.json").read_text())
    assert not list(tmp_path.rglob("pwned*"))


# --------------------------------------------------------------------------- the size of the corpus

# Kinds checked by a test of their own rather than a table above (a file without read
# permission is not counted: its test is skipped where the tests run as root)
STANDALONE_KINDS = [
    "a file name that is not valid UTF-8",
    "a manifest mixing local files and object-store URIs",
    "a folder listed in an image manifest",
    "a source turned to junk while a run is written",
    "a source turned to junk before a resume",
]
VALID_TABLES = ("unusual valid audio", "hostile file names", "unusual valid manifests", "unusual valid images",
                "unusual valid recipe texts")  # inputs that must work; the other tables must be refused


def corpus_kinds(tmp: Path) -> dict[str, int]:
    """How many kinds each table of this corpus holds; every one is checked by a test above."""
    return {
        "hostile audio files": len(hostile_audio(tmp / "audio")),
        "unusual valid audio": len(unusual_audio(tmp / "unusual_audio")),
        "sparse files": len(SPARSE_KINDS),
        "hostile file names": len(HOSTILE_NAMES),
        "manifest rows": len(MANIFEST_ROWS),
        "unreadable manifests": len(MANIFEST_ERRORS),
        "path cells that are not text": len(PATH_TYPES),
        "unusual valid manifests": len(UNUSUAL_MANIFESTS),
        "patterns": len(PATTERN_ERRORS),
        "hostile images": len(hostile_images(tmp / "images")),
        "unusual valid images": len(unusual_images(tmp / "unusual_images")),
        "recipe texts": len(RECIPE_TEXTS),
        "unusual valid recipe texts": len(UNUSUAL_RECIPES),
        "standalone": len(STANDALONE_KINDS),
    }


def test_the_hostile_input_corpus_counts_its_kinds(tmp_path):
    from .test_bad_inputs import make_bad_audio, make_bad_images

    kinds = corpus_kinds(tmp_path / "hostile")
    assert kinds == {
        "hostile audio files": 34, "unusual valid audio": 20, "sparse files": 3, "hostile file names": 10,
        "manifest rows": 12, "unreadable manifests": 18, "path cells that are not text": 4,
        "unusual valid manifests": 9, "patterns": 5,
        "hostile images": 21, "unusual valid images": 12, "recipe texts": 27, "unusual valid recipe texts": 3,
        "standalone": 5,
    }
    # docs/recipes.md ("Bad input") gives these numbers: 183 kinds, 129 refused and 54 valid,
    # beside the first corpus (41 kinds now; 32 when this file was written)
    valid = sum(kinds[t] for t in VALID_TABLES)
    assert (sum(kinds.values()), sum(kinds.values()) - valid, valid) == (183, 129, 54)
    first = len(make_bad_audio(tmp_path / "first_audio")) + len(make_bad_images(tmp_path / "first_images")) + 8
    assert first == 41 and sum(kinds.values()) >= 2 * 32
