"""Specification of compressed sources in pools (MP3, Ogg Vorbis, Opus): a read lands on the
same samples however it is reached, the decoders stay off the terminal, the true length is
found, and damaged files become rejects with a reason. See engine/audio/io.py's docstring
for what libsndfile does per format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings

from engine.audio import io as audio_io
from engine.audio.io import HandleCache, probe, read_all, read_mono, read_segment
from engine.errors import BadSourceError

ROOT = Path(__file__).resolve().parent.parent


def _speechlike(seconds: float, sample_rate: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Voiced syllables (a gliding harmonic tone under a 4 Hz envelope) over a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    x = 0.2 * voiced * envelope + 0.01 * rng.standard_normal(t.size)
    out = np.stack([np.roll(x, 37 * c) for c in range(channels)], axis=1).astype(np.float32)
    return out[:, 0] if channels == 1 else out


_ENCODINGS = {  # name -> (soundfile format, subtype, suffix)
    "mp3": ("MP3", "MPEG_LAYER_III", ".mp3"),
    "vorbis": ("OGG", "VORBIS", ".ogg"),
    "opus": ("OGG", "OPUS", ".opus"),
}


def _encode(path: Path, codec: str, x: np.ndarray, sample_rate: int = 16000) -> str:
    fmt, subtype, _ = _ENCODINGS[codec]
    sf.write(str(path), x, sample_rate, format=fmt, subtype=subtype)
    return str(path)


def _strip_xing(path: str, dest: Path) -> str:
    """The MP3 without its Xing/Info frame: libsndfile must then guess the length."""
    data = Path(path).read_bytes()
    layout = audio_io._mp3_layout(data)
    offset, size = layout.xing
    dest.write_bytes(data[:offset] + data[offset + size :])
    return str(dest)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, str]:
    """One file per way a compressed source can be laid out."""
    d = tmp_path_factory.mktemp("codecs")
    files = {
        "mp3": _encode(d / "a.mp3", "mp3", _speechlike(7.0)),
        "vorbis": _encode(d / "a.ogg", "vorbis", _speechlike(7.0, seed=1)),
        "opus": _encode(d / "a.opus", "opus", _speechlike(7.0, seed=2)),
        "vorbis_stereo_48k": _encode(d / "s.ogg", "vorbis", _speechlike(3.0, 48000, 2, seed=3), 48000),
        "opus_stereo_48k": _encode(d / "s.opus", "opus", _speechlike(3.0, 48000, 2, seed=4), 48000),
        "mp3_stereo_44k": _encode(d / "s.mp3", "mp3", _speechlike(3.0, 44100, 2, seed=5), 44100),
    }
    files["mp3_no_xing"] = _strip_xing(files["mp3"], d / "noxing.mp3")
    return files


# ------------------------------------------------------------------ sample-exact reads

_WINDOWS = st.lists(st.tuples(st.integers(0, 120_000), st.integers(0, 20_000)), min_size=1, max_size=6)


@pytest.mark.parametrize(
    "layout",
    ["mp3", "mp3_no_xing", "mp3_stereo_44k", "vorbis", "vorbis_stereo_48k", "opus", "opus_stereo_48k"],
)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(windows=_WINDOWS)
def test_a_seek_read_is_a_slice_of_the_whole_decode_byte_for_byte(sources, layout, windows):
    path = sources[layout]
    whole = read_all(path)
    mono = whole[:, 0] if whole.shape[1] == 1 else whole.mean(axis=1, dtype=np.float64).astype(np.float32)
    # caches that stream (no whole decodes kept), spill to disk, or keep decodes in memory,
    # each reused across the windows
    with HandleCache(decoded_bytes=0, spill_bytes=0) as streaming, HandleCache(decoded_bytes=0) as spilled, \
            HandleCache() as cache:
        for start, frames in windows:
            want = whole[start : start + frames]
            for got in (
                read_segment(path, start, frames),
                read_segment(path, start, frames, cache=streaming),
                read_segment(path, start, frames, cache=spilled),
                read_segment(path, start, frames, cache=cache),
            ):
                assert type(got) is np.ndarray
                assert got.dtype == np.float32 and got.tobytes() == want.tobytes()
            assert read_mono(path, start, frames, cache=streaming).tobytes() == mono[start : start + frames].tobytes()
            assert read_mono(path, start, frames).tobytes() == mono[start : start + frames].tobytes()


def test_whole_reads_agree_through_every_path(sources):
    for path in sources.values():
        whole = read_all(path)
        with HandleCache(decoded_bytes=0, spill_bytes=0) as streaming, HandleCache() as cache:
            read_segment(path, 1234, 500, cache=streaming)  # the stream is part way
            assert read_all(path, cache=streaming).tobytes() == whole.tobytes()
            assert read_all(path, cache=cache).tobytes() == read_all(path, cache=cache).tobytes() == whole.tobytes()


def test_vorbis_reads_are_exact_in_the_last_page_and_just_ahead_of_a_used_handle(sources):
    """libsndfile 1.2.2 gets both wrong: a seek into the last Ogg page from a fresh handle,
    and a short forward seek on a handle that has decoded before."""
    path = sources["vorbis"]
    whole = read_all(path)
    last_page = whole.shape[0] - 3000
    assert read_mono(path, last_page, 10).tobytes() == whole[last_page : last_page + 10, 0].tobytes()
    with HandleCache(decoded_bytes=0, spill_bytes=0) as cache:
        for start in (1000, 9000, 21000, 40000, 47000, 90000, 3000):
            assert read_mono(path, start, 4000, cache=cache).tobytes() == whole[start : start + 4000, 0].tobytes()


def test_a_decode_is_kept_in_memory_if_it_fits_a_quarter_of_the_budget_else_on_disk(sources, tmp_path):
    one_file = 7 * 16000 * 4  # bytes of the 7 s mono decodes
    for budget, spill, in_memory, on_disk in ((4 * one_file, 0, 2, 0), (2 * one_file, 8 * one_file, 0, 2),
                                              (2 * one_file, one_file // 2, 0, 0)):
        with HandleCache(decoded_bytes=budget, spill_bytes=spill, spill_dir=str(tmp_path)) as cache:
            for name in ("mp3", "opus"):
                got = read_mono(sources[name], 8000, 100, cache=cache)
                assert got.tobytes() == read_all(sources[name])[8000:8100, 0].tobytes()
            kept = list(cache._decoded.values())
            assert sum(not isinstance(a, np.memmap) for a in kept) == in_memory
            assert sum(isinstance(a, np.memmap) for a in kept) == on_disk
            assert sum(a.nbytes for a in kept if not isinstance(a, np.memmap)) <= budget
            assert list(tmp_path.iterdir()) == []  # scratch files are unlinked at once


def test_spilled_decodes_beyond_the_disk_budget_are_dropped_oldest_first(sources):
    with HandleCache(decoded_bytes=0, spill_bytes=7 * 16000 * 4) as cache:
        read_mono(sources["mp3"], 0, 10, cache=cache)
        read_mono(sources["opus"], 0, 10, cache=cache)
        assert list(cache._decoded) == [sources["opus"]]


# ------------------------------------------------------------------ probe: length and formats


@pytest.mark.parametrize("layout", ["mp3", "mp3_no_xing", "vorbis", "opus", "opus_stereo_48k", "mp3_stereo_44k"])
def test_probe_reports_the_length_the_reads_deliver(sources, layout):
    info = probe(sources[layout])
    whole = read_all(sources[layout])
    assert info.frames == whole.shape[0] and info.channels == whole.shape[1]
    assert info.duration_s == pytest.approx(whole.shape[0] / info.sample_rate)
    assert info.format in ("MP3", "OGG")


def test_an_mp3_keeps_its_gapless_length(sources):
    """With a LAME/Xing frame, the encoder's delay and padding are trimmed: 7 s stays 7 s."""
    assert probe(sources["mp3"]).frames == 7 * 16000


def test_an_mp3_without_a_xing_frame_gets_its_true_length(tmp_path):
    """libsndfile guesses the length from the first frame's bitrate and never reads past
    the guess; both a loud start (guess too short) and a quiet one (too long) are right."""
    x = _speechlike(8.0)
    quiet_start = np.concatenate([np.zeros(16000 * 4, np.float32), x[: 16000 * 4]])
    loud_start = np.concatenate([x[: 16000 * 4] * 4, np.zeros(16000 * 4, np.float32)])
    for name, signal in (("quiet", quiet_start), ("loud", loud_start)):
        with_xing = _encode(tmp_path / f"{name}.mp3", "mp3", signal)
        stripped = _strip_xing(with_xing, tmp_path / f"{name}_noxing.mp3")
        layout = audio_io._mp3_layout(Path(stripped).read_bytes())
        guessed = sf.info(stripped).frames
        info = probe(stripped)
        assert info.frames == layout.audio_frames * 576 == read_all(stripped).shape[0]
        assert info.frames > 8 * 16000  # no gapless trimming without the LAME tag
        if name == "loud":
            assert guessed < info.frames  # what libsndfile alone would have cut off


def test_an_mp3_with_a_stale_frame_count_is_decoded_to_its_end(tmp_path):
    """Two encodes joined after the fact: the first's Xing count covers only its part."""
    first = Path(_encode(tmp_path / "a.mp3", "mp3", _speechlike(3.0)))
    second = Path(_strip_xing(_encode(tmp_path / "b.mp3", "mp3", _speechlike(2.0, seed=9)), tmp_path / "b2.mp3"))
    joined = tmp_path / "joined.mp3"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    assert sf.info(str(joined)).frames == 3 * 16000  # what libsndfile believes
    layout = audio_io._mp3_layout(joined.read_bytes())
    info = probe(str(joined))
    assert info.frames == layout.audio_frames * 576 == read_all(str(joined)).shape[0] > 5 * 16000


def test_a_decodable_file_under_another_extension_is_read_by_its_content(sources, tmp_path):
    opus_named_mp3 = tmp_path / "really_opus.mp3"
    opus_named_mp3.write_bytes(Path(sources["opus"]).read_bytes())
    mp3_named_wav = tmp_path / "really_mp3.wav"
    mp3_named_wav.write_bytes(Path(sources["mp3"]).read_bytes())
    assert probe(str(opus_named_mp3)).format == "OGG"
    assert probe(str(mp3_named_wav)).frames == probe(sources["mp3"]).frames
    assert read_all(str(mp3_named_wav)).tobytes() == read_all(sources["mp3"]).tobytes()


# ------------------------------------------------------------------ damaged files are rejects


def _damaged(path: str, dest: Path, damage: str) -> str:
    data = Path(path).read_bytes()
    mid = len(data) // 2
    changed = {
        "truncated": data[: len(data) * 2 // 3],
        "last_bytes_cut": data[:-7],
        "bytes_flipped": data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 64]) + data[mid + 64 :],
        "zeros_in_the_middle": data[:mid] + bytes(400) + data[mid + 400 :],
        "header_only": data[:200],
        "empty": b"",
        "text": b"this is not audio, just a note someone saved with the wrong name\n",
    }[damage]
    dest.write_bytes(changed)
    return str(dest)


_EXPECTED = {
    "truncated": "truncated:",
    "last_bytes_cut": "truncated:",
    "bytes_flipped": "corrupt:",
    "zeros_in_the_middle": "corrupt:",
    "empty": "empty file (0 bytes)",
    "text": "the content looks like text",
}


@pytest.mark.parametrize("codec", ["mp3", "vorbis", "opus"])
@pytest.mark.parametrize("damage", [*_EXPECTED, "header_only"])
def test_a_damaged_compressed_file_is_rejected_with_a_reason(sources, tmp_path, codec, damage, capfd):
    suffix = _ENCODINGS[codec][2]
    path = _damaged(sources[codec], tmp_path / f"{damage}{suffix}", damage)
    with pytest.raises(BadSourceError) as err:
        probe(path)
    reason = err.value.reason
    assert path in str(err.value)
    if damage == "header_only":
        assert reason.startswith(("truncated:", "not an audio file:")), reason
    else:
        assert _EXPECTED[damage] in reason, reason
    if damage == "text":
        assert f"the {suffix} extension suggests" in reason
    assert capfd.readouterr().err == ""  # a reject, never decoder noise or a traceback


def test_an_mp3_the_decoder_complains_about_is_rejected_naming_the_complaint(sources, tmp_path):
    """Without a LAME tag nothing checks the frames' data; damaged side information makes
    libmpg123 complain while decoding, and the complaint is the reason."""
    data = bytearray(Path(_strip_xing(sources["mp3"], tmp_path / "plain.mp3")).read_bytes())
    i, frame = 0, 0
    while frame < 60:  # damage the side information of frame 60
        i += audio_io._mp3_frame(bytes(data), i)[0]
        frame += 1
    data[i + 4 : i + 9] = b"\xff\xff\xff\xff\xff"
    path = tmp_path / "damaged.mp3"
    path.write_bytes(bytes(data))
    with pytest.raises(BadSourceError, match="the decoder reports .* error"):
        probe(str(path))


def test_a_libsndfile_decode_error_is_a_reject_naming_libsndfiles_reason(tmp_path):
    with sf.SoundFile(str(tmp_path / "w.wav"), "w", 16000, 1) as handle:  # reading it is an error
        with pytest.raises(BadSourceError, match=r"corrupt: decoding failed in frames 0\.\.10 \(libsndfile: Read"):
            audio_io._decode_raw(handle, "x.mp3", 10, 0, quiet=True)


def test_damaged_files_become_rejects_of_the_pool_index(sources, tmp_path):
    from engine.config import AudioPool
    from engine.pools import index_pool

    folder = tmp_path / "pool"
    folder.mkdir()
    for codec in ("mp3", "vorbis", "opus"):
        suffix = _ENCODINGS[codec][2]
        Path(folder / f"good{suffix}").write_bytes(Path(sources[codec]).read_bytes())
        _damaged(sources[codec], folder / f"cut{suffix}", "truncated")
    items, rejects = index_pool("noise", AudioPool(paths=[str(folder / "*")]), tmp_path)
    assert sorted(Path(p).name for p in items.paths) == ["good.mp3", "good.ogg", "good.opus"]
    assert sorted(Path(r["path"]).name for r in rejects) == ["cut.mp3", "cut.ogg", "cut.opus"]
    assert all(r["reason"].startswith("truncated:") for r in rejects)


# ------------------------------------------------------------------ no decoder noise


_NOISY_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, soundfile as sf
    from engine.audio.io import HandleCache, probe, read_mono
    path = sys.argv[1]
    if sys.argv[2] == "raw":  # what the engine did before: pysoundfile seeks in an MP3
        with sf.SoundFile(path) as f:
            for start in (30000, 5000, 60000, 12345):
                f.seek(start)
                f.read(8000)
    else:
        probe(path)
        with HandleCache(decoded_bytes=0, spill_bytes=0) as cache:
            for start in (30000, 5000, 60000, 12345):
                read_mono(path, start, 8000, cache=cache)
    print("done")
    """
)


def test_mp3_seeks_print_nothing_to_the_terminal(sources):
    """The terminal is the process's fd 2, so this runs in a child process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    raw = subprocess.run([sys.executable, "-c", _NOISY_SCRIPT, sources["mp3"], "raw"],
                         capture_output=True, text=True, env=env, check=True)
    assert "part2_3_length" in raw.stderr  # libsndfile alone does print: the test can see it
    ours = subprocess.run([sys.executable, "-c", _NOISY_SCRIPT, sources["mp3"], "engine"],
                          capture_output=True, text=True, env=env, check=True)
    assert ours.stdout.strip() == "done" and ours.stderr == ""


def test_other_text_written_to_stderr_during_a_decode_still_reaches_it(capfd):
    with audio_io._decoder_messages() as messages:
        os.write(2, b"[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: part2_3_length (9) too large\n")
        os.write(2, b"a warning from some other thread\n")
    assert messages == ["[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: part2_3_length (9) too large"]
    assert capfd.readouterr().err == "a warning from some other thread\n"


def test_probing_in_the_indexer_thread_pool_is_quiet_and_gives_the_serial_answers(sources, tmp_path, capfd):
    paths = [sources[k] for k in ("mp3", "mp3_no_xing", "mp3_stereo_44k", "opus", "vorbis")] * 4
    paths.append(_damaged(sources["mp3"], tmp_path / "cut.mp3", "last_bytes_cut"))

    def outcome(path):
        try:
            return probe(path)
        except BadSourceError as exc:
            return exc.reason

    serial = [outcome(p) for p in paths]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(outcome, paths)) == serial
    assert capfd.readouterr().err == ""


# ------------------------------------------------------------------ end to end


def test_a_recipe_of_mp3_speech_and_opus_and_vorbis_noise_replays_byte_exactly(tmp_path):
    from engine.recipe import parse_recipe
    from engine.synth_checks import check_context, check_replay_reproduces_the_row, check_same_seed_same_bytes

    speech, noise = tmp_path / "speech", tmp_path / "noise"
    speech.mkdir()
    noise.mkdir()
    rows = ["path,text,speaker"]
    for i in range(6):
        _encode(speech / f"u{i}.mp3", "mp3", _speechlike(2.0 + 0.5 * i, seed=10 + i))
        rows.append(f"u{i}.mp3,word{i},spk{i % 2}")
    (speech / "manifest.csv").write_text("\n".join(rows) + "\n")
    rng = np.random.default_rng(0)
    for i in range(3):
        hum = (0.05 * rng.standard_normal(16000 * 12)).astype(np.float32)
        _encode(noise / f"car{i}.opus", "opus", hum)
        _encode(noise / f"rain{i}.ogg", "vorbis", hum[::-1].copy())
    recipe = parse_recipe(
        {
            "name": "compressed_pools",
            "seed": 7,
            "output": {"format": "arrow", "samples_per_shard": 8, "audio_codec": "flac"},
            "pools": {
                "speech": {"manifest": str(speech / "manifest.csv")},
                "noise": {"paths": [str(noise / "*.opus"), str(noise / "*.ogg")]},
            },
            "splits": {"train": {"samples": 8}},
            "synth": {
                "type": "speech_noise_mix",
                "speech": "speech",
                "sample_rate": 16000,
                "noise": [{"pool": "noise", "snr_db_range": [0, 20]}],
            },
        },
        base_dir=tmp_path,
    )
    ctx = check_context(recipe, tmp_path / "scratch", samples=8)
    assert not ctx.index.rejects
    check_same_seed_same_bytes(ctx)
    check_replay_reproduces_the_row(ctx)
    # replayed in reverse with a fresh synthesizer: every cached handle is met in another order
    from engine.shards import read_shard

    table = read_shard(next(p for p in (ctx.scratch).rglob("*.arrow")))
    synth = ctx.synth()
    try:
        for row in reversed(table.to_pylist()):
            params = json.loads(row["params"])
            params.pop("applied", None)
            assert synth.apply(params).columns["audio"]["bytes"] == row["audio"]["bytes"]
    finally:
        synth.close()
