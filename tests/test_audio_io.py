"""Specification of engine.audio.io: every bad source is rejected with a reason, reads seek."""

from __future__ import annotations

import io
import os
import struct
import time
from pathlib import Path

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings

from engine.audio import io as audio_io
from engine.audio.io import AudioInfo, HandleCache, decode, encode, probe, read_all, read_segment
from engine.env import SHARED_DECODES_ENV
from engine.errors import BadSourceError


def _noise(seconds: float, sample_rate: int = 16000, channels: int = 1, level: float = 0.1, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-level, level, (int(seconds * sample_rate), channels)).astype(np.float32)
    return x[:, 0] if channels == 1 else x


def _write(path, x, sample_rate=16000, **kwargs):
    sf.write(str(path), x, sample_rate, **kwargs)
    return str(path)


def _chop(path, n_bytes: int) -> None:
    """Cut the last n_bytes off a file, as an interrupted copy would."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:-n_bytes])


def _reason(path, **kwargs) -> str:
    with pytest.raises(BadSourceError) as info:
        probe(str(path), **kwargs)
    assert info.value.path == str(path)
    return info.value.reason


def test_probe_reports_a_good_file(tmp_path):
    path = _write(tmp_path / "a.flac", _noise(1.5, channels=2), subtype="PCM_16")
    info = probe(path)
    assert info == AudioInfo(
        frames=24000, sample_rate=16000, channels=2, duration_s=1.5, format="FLAC", subtype="PCM_16",
        peak=info.peak, rms=info.rms, ac_rms=info.ac_rms,
    )
    assert 0.0 < info.rms < info.peak <= 1.0


def test_missing_file_is_rejected(tmp_path):
    assert _reason(tmp_path / "nope.wav") == "file not found"


def test_empty_file_is_rejected(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    assert _reason(path) == "empty file (0 bytes)"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads everything")
def test_unreadable_file_is_rejected(tmp_path):
    path = _write(tmp_path / "locked.wav", _noise(0.1))
    os.chmod(path, 0)
    assert "permission denied" in _reason(path)


def test_text_file_named_wav_is_not_audio(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is a note, not a recording\n")
    reason = _reason(path)
    assert reason.startswith("not an audio file")
    assert ".wav extension suggests WAV audio" in reason
    assert "looks like text and it is not decodable audio" in reason


def test_random_bytes_named_flac_are_not_audio(tmp_path):
    path = tmp_path / "blob.flac"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    reason = _reason(path)
    assert ".flac extension suggests FLAC audio" in reason and "looks like text" not in reason


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
@pytest.mark.parametrize("chop_bytes", [100, 5000])
def test_truncated_file_is_rejected(tmp_path, fmt, chop_bytes):
    path = _write(tmp_path / f"cut.{fmt.lower()}", _noise(3.0), format=fmt, subtype="PCM_16")
    _chop(path, chop_bytes)
    assert _reason(path).startswith("truncated")


def test_truncated_long_flac_is_found(tmp_path):
    path = _write(tmp_path / "long.flac", _noise(40.0, 8000, level=0.01), 8000, subtype="PCM_16")
    _chop(path, 2000)
    assert _reason(path).startswith("truncated")


def test_header_only_wav_is_rejected(tmp_path):
    empty = _write(tmp_path / "zero.wav", np.zeros(0, np.float32), subtype="PCM_16")
    assert _reason(empty) == "no audio: 0 frames (header only)"
    full = _write(tmp_path / "full.wav", _noise(1.0), subtype="PCM_16")
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(Path(full).read_bytes()[:44])  # declares 1 s, holds nothing
    reason = _reason(header_only)
    assert reason.startswith("no audio") or reason.startswith("truncated")


def test_nan_samples_are_rejected(tmp_path):
    x = _noise(1.0)
    x[1234] = np.nan
    path = _write(tmp_path / "nan.wav", x, subtype="FLOAT")
    assert _reason(path) == "contains NaN/Inf samples (first at frame 1234)"


def test_inf_samples_are_rejected(tmp_path):
    x = _noise(1.0)
    x[-1] = np.inf
    path = _write(tmp_path / "inf.wav", x, subtype="FLOAT")
    assert "NaN/Inf" in _reason(path)


def test_silent_file_is_rejected(tmp_path):
    zeros = _write(tmp_path / "zeros.flac", np.zeros(16000, np.float32), subtype="PCM_16")
    assert _reason(zeros) == "silent: all samples are zero"
    whisper = _write(tmp_path / "whisper.wav", np.full(16000, 1e-6, np.float32), subtype="FLOAT")
    assert _reason(whisper) == "silent: peak -120.0 dBFS is below the -90 dBFS floor"


def test_too_many_channels_are_rejected(tmp_path):
    path = _write(tmp_path / "nine.wav", _noise(0.1, channels=9), subtype="PCM_16")
    assert _reason(path) == "9 channels is not usable; expected 1..8"


def test_low_sample_rate_is_rejected(tmp_path):
    path = _write(tmp_path / "low.wav", _noise(1.0, 500), 500, subtype="PCM_16")
    assert _reason(path) == "sample rate 500 Hz is not usable; expected 1000..384000 Hz"


def test_zero_sample_rate_is_rejected(tmp_path):
    path = _write(tmp_path / "sr0.wav", _noise(0.1), subtype="PCM_16")
    data = bytearray(Path(path).read_bytes())
    data[24:28] = struct.pack("<I", 0)  # the fmt chunk's sample rate
    Path(path).write_bytes(bytes(data))
    assert _reason(path) == "sample rate 0 Hz is not usable; expected 1000..384000 Hz"


def test_a_long_file_is_decoded_in_full_and_its_level_measured(tmp_path, monkeypatch):
    sample_rate = 8000
    x = _noise(200.0, sample_rate, level=0.003)
    path = _write(tmp_path / "long.wav", x, sample_rate, subtype="FLOAT")
    frames_read = []
    original_read = sf.SoundFile.read

    def counting_read(self, frames=-1, *args, **kwargs):
        block = original_read(self, frames, *args, **kwargs)
        frames_read.append(len(block))
        return block

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    info = probe(path)
    assert info.frames == 200 * sample_rate and info.duration_s == 200.0
    assert sum(frames_read) == 200 * sample_rate  # every frame, in bounded blocks
    assert max(frames_read) <= 65536
    assert info.peak == pytest.approx(float(np.abs(x).max()), rel=1e-6)
    assert info.rms == pytest.approx(float(np.sqrt(np.mean(x.astype(np.float64) ** 2))), rel=1e-6)


def test_a_long_file_with_sound_in_one_place_only_is_not_silent(tmp_path):
    x = np.zeros(200 * 1000, np.float32)
    x[150_000:150_100] = 0.5  # where a spot check would not look
    info = probe(_write(tmp_path / "sparse.wav", x, 1000, subtype="PCM_16"))
    assert info.peak == pytest.approx(0.5, abs=1e-4)


@settings(max_examples=60, deadline=None)
@given(
    frames=st.integers(1, 3000),
    channels=st.integers(1, 3),
    dc=st.floats(-0.9, 0.9),
    amplitude=st.sampled_from([0.0, 1e-4, 1e-2, 0.05]),
    cuts=st.lists(st.integers(1, 3000), max_size=4),
    seed=st.integers(0, 2**16),
)
def test_the_level_measured_block_by_block_is_the_level_of_the_whole(frames, channels, dc, amplitude, cuts, seed):
    from engine.audio.io import _Level

    rng = np.random.default_rng(seed)
    x = (dc + amplitude * rng.standard_normal((frames, channels))).astype(np.float32)
    level = _Level()
    for block in np.split(x, sorted({c for c in cuts if c < frames})):
        level.add(block)
    wide = x.astype(np.float64)
    assert level.peak == float(np.abs(x).max())  # exact: the largest sample itself
    assert level.rms == pytest.approx(float(np.sqrt(np.mean(wide**2))), rel=1e-5, abs=1e-12)
    ac = float(np.sqrt(np.mean((wide - wide.mean(axis=0)) ** 2)))
    assert level.ac_rms == pytest.approx(ac, rel=1e-3, abs=1e-9)  # no cancellation against the DC


def test_the_level_of_a_float_file_far_past_full_scale_is_finite(tmp_path):
    # 1e36 is a finite float32; its square is not: the RMS is summed in float64.
    path = _write(tmp_path / "huge.wav", np.full(1000, 1e36, np.float32), 16000, subtype="FLOAT")
    info = probe(path)
    assert np.isfinite(info.rms) and info.rms == pytest.approx(1e36, rel=1e-6)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_read_segment_matches_the_full_array(tmp_path, fmt):
    x = _noise(3.0, channels=2)
    path = _write(tmp_path / f"s.{fmt.lower()}", x, format=fmt, subtype="PCM_16")
    full = read_all(path)
    assert full.shape == (48000, 2) and full.dtype == np.float32
    np.testing.assert_allclose(full, x, atol=1.0 / 32768)
    with HandleCache(capacity=2) as cache:
        for start, frames in [(0, 100), (12345, 4000), (47000, 1000), (47990, 10), (47999, 1)]:
            segment = read_segment(path, start, frames, cache=cache)
            np.testing.assert_array_equal(segment, full[start : start + frames])
        assert path in cache and len(cache) == 1


def test_read_segment_clips_at_the_end_of_the_file(tmp_path):
    path = _write(tmp_path / "s.flac", _noise(1.0), subtype="PCM_16")
    full = read_all(path)
    tail = read_segment(path, 15000, 5000)
    assert tail.shape == (1000, 1)
    np.testing.assert_array_equal(tail, full[15000:])
    assert read_segment(path, 20000, 10).shape == (0, 1)


def test_read_segment_rejects_nan_and_truncation(tmp_path):
    x = _noise(1.0)
    x[8000] = np.nan
    nan_path = _write(tmp_path / "nan.wav", x, subtype="FLOAT")
    assert read_segment(nan_path, 0, 100).shape == (100, 1)  # the NaN is elsewhere
    with pytest.raises(BadSourceError, match="NaN"):
        read_segment(nan_path, 7900, 200)
    cut_path = _write(tmp_path / "cut.flac", _noise(3.0), subtype="PCM_16")
    _chop(cut_path, 3000)
    with HandleCache() as cache:
        with pytest.raises(BadSourceError, match="truncated"):
            read_segment(cut_path, 46000, 2000, cache=cache)
        assert cut_path not in cache  # a handle in an error state is not reused


def test_handle_cache_evicts_least_recently_used(tmp_path):
    paths = [_write(tmp_path / f"{i}.wav", _noise(0.1, seed=i), subtype="PCM_16") for i in range(3)]
    cache = HandleCache(capacity=2)
    first = cache.get(paths[0])
    cache.get(paths[1])
    cache.get(paths[0])
    cache.get(paths[2])
    assert paths[0] in cache and paths[2] in cache and paths[1] not in cache
    cache.close()
    assert len(cache) == 0 and first.closed


@pytest.mark.parametrize("codec", ["flac", "wav"])
@pytest.mark.parametrize("channels", [None, 2])
def test_encode_decode_round_trip_within_pcm16_quantization(codec, channels):
    x = _noise(0.5, channels=channels or 1, level=0.9, seed=3)
    data = encode(x, 16000, codec)
    y, sample_rate = decode(data)
    assert sample_rate == 16000 and y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1.0 / 32767)
    assert encode(x.copy(), 16000, codec) == data  # deterministic bytes


def test_encode_clips_out_of_range_samples():
    y, _ = decode(encode(np.array([2.0, -2.0, 0.5], np.float32), 8000, "wav"))
    np.testing.assert_allclose(y, [1.0, -1.0, 0.5], atol=1.0 / 32767)


def test_encode_rejects_unknown_codec_and_nan():
    with pytest.raises(ValueError, match="codec"):
        encode(np.zeros(10, np.float32), 16000, "mp3")
    with pytest.raises(ValueError, match="NaN"):
        encode(np.array([np.nan], np.float32), 16000)


def test_decode_rejects_garbage():
    with pytest.raises(ValueError, match="not decodable"):
        decode(b"hello")


def test_module_limits():
    assert (audio_io.MIN_SAMPLE_RATE, audio_io.MAX_SAMPLE_RATE, audio_io.MAX_CHANNELS) == (1000, 384000, 8)


@settings(max_examples=60, deadline=None)
@given(
    samples=hnp.arrays(
        np.float32,
        st.integers(1, 3000),
        elements=st.one_of(
            st.floats(-1.5, 1.5, width=32),
            # exact half steps of the int16 grid (rounding ties) and the clipping edges
            st.integers(-65540, 65540).map(lambda k: np.float32(k / 65536.0)),
            st.sampled_from([np.float32(v) for v in (1.0, -1.0, 32767.5 / 32768, -32768.5 / 32768)]),
        ),
    ),
    stereo=st.booleans(),
)
def test_flac_encode_gives_the_bytes_of_libsndfiles_own_float_conversion(samples, stereo):
    # encode() converts to int16 itself before libFLAC (faster); the bytes must be those
    # libsndfile makes from the float samples, or a shard's bytes would change.
    x = np.stack([samples, samples[::-1]], axis=1) if stereo else samples
    expected = io.BytesIO()
    sf.write(expected, np.clip(x, -1.0, 1.0), 16000, format="FLAC", subtype="PCM_16")
    assert encode(x, 16000, "flac") == expected.getvalue()
    clipped = np.clip(x, -1.0, 1.0)
    assert encode(clipped, 16000, "flac", checked=True) == expected.getvalue()


# ------------------------------------------------------------ lossless files read in segments


@settings(max_examples=25, deadline=None)
@given(
    starts=st.lists(st.integers(0, 47_000), min_size=8, max_size=20),
    frames=st.integers(1, 12_000),
    channels=st.sampled_from([1, 2]),
    fmt=st.sampled_from([("FLAC", "PCM_16"), ("WAV", "FLOAT"), ("WAV", "PCM_24")]),
)
def test_a_lossless_file_read_in_segments_gives_the_same_samples_from_its_whole_decode(
    tmp_path_factory, starts, frames, channels, fmt
):
    path = _write(tmp_path_factory.mktemp("hot") / f"n.{fmt[0].lower()}", _noise(3.0, channels=channels, level=0.5), format=fmt[0], subtype=fmt[1])
    plain = HandleCache(decoded_bytes=0, spill_bytes=0)  # no budget: every read seeks
    with HandleCache() as hot:
        for s in starts:
            a = audio_io.read_mono(path, s, frames, cache=plain)
            b = audio_io.read_mono(path, s, frames, cache=hot)
            assert a.dtype == b.dtype == np.float32 and a.tobytes() == b.tobytes()
        assert bool(hot._lossless.decoded) == (len(starts) * frames > 48_000)  # the reads passed its length
    plain.close()


def test_a_segment_read_file_is_decoded_whole_once_its_reads_add_up_to_its_length(tmp_path):
    path = _write(tmp_path / "noise.flac", _noise(1.0), format="FLAC")  # 16,000 frames
    with HandleCache() as cache:
        for _ in range(3):
            audio_io.read_mono(path, 100, 5000, cache=cache)  # 15,000 frames read: not yet
        assert not cache._lossless.decoded
        audio_io.read_mono(path, 100, 5000, cache=cache)  # 20,000 > 16,000
        assert [k[0] for k in cache._lossless.decoded] == [path]
    whole_reads = _write(tmp_path / "speech.flac", _noise(1.0), format="FLAC")
    with HandleCache() as cache:
        for _ in range(5):
            audio_io.read_mono(whole_reads, 0, 16000, cache=cache)  # whole reads never count
        assert not cache._lossless.decoded


def test_a_file_named_to_the_store_is_decoded_whole_at_its_first_segment_read(tmp_path):
    path = _write(tmp_path / "noise.flac", _noise(1.0), format="FLAC")  # 16,000 frames
    other = _write(tmp_path / "other.flac", _noise(1.0, seed=3), format="FLAC")
    store = audio_io.DecodeStore()
    store.decode_at_first_read([path])
    with HandleCache(lossless=store) as cache:
        got = audio_io.read_mono(path, 100, 500, cache=cache)  # 500 of 16,000 frames: decoded now
        audio_io.read_mono(other, 100, 500, cache=cache)  # not named: seeks until its reads add up
        assert [k[0] for k in store.decoded] == [path]
    assert got.tobytes() == audio_io.read_mono(path, 100, 500).tobytes()  # the samples a seek gives
    store.hold_for("another run")  # a run's list goes with its decodes
    assert not store.eager and not store.decoded


def test_a_worker_keeps_a_whole_decode_across_its_shards_caches_until_the_file_changes(tmp_path):
    path = _write(tmp_path / "noise.flac", _noise(1.0), format="FLAC")
    store = audio_io.DecodeStore()  # one per worker (speech_noise_mix keeps it at module level)
    with HandleCache(lossless=store) as first_shard:
        for _ in range(4):
            audio_io.read_mono(path, 0, 5000, cache=first_shard)
    assert len(store.decoded) == 1
    with HandleCache(lossless=store) as next_shard:  # decoded once: the next shard slices it
        assert audio_io.read_mono(path, 10, 4, cache=next_shard).tobytes() == audio_io.read_mono(path, 10, 4).tobytes()
        assert store.seen[next(iter(store.decoded))] == 20_000  # nothing counted or decoded again
    x = _noise(1.0, seed=5)
    _write(path, x, format="FLAC")  # rewritten: another size or mtime, another entry
    os.utime(path, ns=(1, 1))
    with HandleCache(lossless=store) as later:
        got = audio_io.read_mono(path, 10, 4, cache=later)
    assert got.tobytes() == audio_io.read_mono(path, 10, 4).tobytes()  # the new content, read with a seek


SPILLS = 4 * 4096  # decoded_bytes: a decode over 4 KiB goes to a file (a quarter in memory)


def test_the_processes_of_a_run_share_the_decode_of_a_long_file_through_the_folder_named(tmp_path, monkeypatch):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o700)  # private, as a run makes it
    monkeypatch.setenv(SHARED_DECODES_ENV, str(folder))
    path = _write(tmp_path / "noise.flac", _noise(2.0), format="FLAC")  # 32,000 frames
    first = audio_io.DecodeStore()  # one process (the driver making a shard) ...
    first.decode_at_first_read([path])
    with HandleCache(decoded_bytes=SPILLS, lossless=first) as cache:
        x = audio_io.read_mono(path, 100, 500, cache=cache)
    published = list(folder.iterdir())
    assert [p.suffix for p in published] == [".f32"] and published[0].stat().st_size == 32_000 * 4
    def no_second_decode(*args, **kwargs):
        pytest.fail("decoded a second time")
        yield  # a generator, as _file_blocks is: it fails when the decode reads a block

    monkeypatch.setattr(audio_io, "_file_blocks", no_second_decode)
    second = audio_io.DecodeStore()  # ... and another (a worker): maps the same file
    second.decode_at_first_read([path])
    with HandleCache(decoded_bytes=SPILLS, lossless=second) as cache:
        y = audio_io.read_mono(path, 31_000, 1_000, cache=cache)
        assert isinstance(next(iter(second.decoded.values())), np.memmap)
    monkeypatch.undo()
    assert x.tobytes() == audio_io.read_mono(path, 100, 500).tobytes()  # the samples a seek gives
    assert y.tobytes() == audio_io.read_mono(path, 31_000, 1_000).tobytes()


def test_a_decode_that_fails_its_checks_is_never_shared_and_a_wrong_sized_one_is_made_again(tmp_path, monkeypatch):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o700)  # private, as a run makes it
    monkeypatch.setenv(SHARED_DECODES_ENV, str(folder))
    x = _noise(2.0, level=0.5)
    x[30_000] = np.nan
    bad = _write(tmp_path / "nan.wav", x, format="WAV", subtype="FLOAT")
    store = audio_io.DecodeStore()
    store.decode_at_first_read([bad])
    with HandleCache(decoded_bytes=SPILLS, lossless=store) as cache:
        with pytest.raises(BadSourceError, match="NaN"):
            audio_io.read_mono(bad, 0, 500, cache=cache)
    assert list(folder.iterdir()) == []  # neither a shared decode nor a part of one
    good = _write(tmp_path / "good.flac", _noise(2.0, seed=4), format="FLAC")
    st_ = os.stat(good)
    name = audio_io._shared_name((str(good), st_.st_size, st_.st_mtime_ns), 1)
    Path(name).write_bytes(b"\0" * 64)  # not whole: not mapped
    store = audio_io.DecodeStore()
    store.decode_at_first_read([good])
    with HandleCache(decoded_bytes=SPILLS, lossless=store) as cache:
        got = audio_io.read_mono(good, 5, 700, cache=cache)
    assert got.tobytes() == audio_io.read_mono(good, 5, 700).tobytes()
    assert Path(name).stat().st_size == 32_000 * 4  # decoded and shared anew


def test_a_shared_decode_evicted_over_the_budget_leaves_the_folder_too(tmp_path, monkeypatch):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o700)  # private, as a run makes it
    monkeypatch.setenv(SHARED_DECODES_ENV, str(folder))
    a = _write(tmp_path / "a.flac", _noise(2.0), format="FLAC")  # 128,000 bytes decoded
    b = _write(tmp_path / "b.flac", _noise(2.0, seed=2), format="FLAC")
    store = audio_io.DecodeStore()
    store.decode_at_first_read([a, b])
    with HandleCache(decoded_bytes=SPILLS, spill_bytes=200_000, lossless=store) as cache:
        audio_io.read_mono(a, 0, 100, cache=cache)
        assert len(list(folder.iterdir())) == 1
        first = next(iter(folder.iterdir()))
        held = next(iter(store.decoded.values()))
        audio_io.read_mono(b, 0, 100, cache=cache)  # both would pass 200,000 bytes: a goes
        assert [k[0] for k in store.decoded] == [b] and list(store.shared) == list(store.decoded)
        assert [p.name for p in folder.iterdir()] != [first.name] and len(list(folder.iterdir())) == 1
        assert held[5:9].tobytes() == audio_io.read_mono(a, 5, 4).reshape(-1, 1).tobytes()  # a map outlives its file


def test_a_folder_others_could_write_to_is_never_used_for_decodes(tmp_path, monkeypatch):
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)  # another user could plant a file under the name a decode takes
    monkeypatch.setenv(SHARED_DECODES_ENV, str(folder))
    assert audio_io._shared_name(("x.flac", 1, 1), 1) is None
    folder.chmod(0o700)
    assert audio_io._shared_name(("x.flac", 1, 1), 1) is not None
    link = tmp_path / "link"
    link.symlink_to(folder)
    monkeypatch.setenv(SHARED_DECODES_ENV, str(link))
    assert audio_io._shared_name(("x.flac", 1, 1), 1) is None


def test_without_the_folder_a_process_keeps_its_decode_to_itself(tmp_path, monkeypatch):
    monkeypatch.delenv(SHARED_DECODES_ENV, raising=False)
    path = _write(tmp_path / "noise.flac", _noise(2.0), format="FLAC")
    store = audio_io.DecodeStore()
    store.decode_at_first_read([path])
    with HandleCache(decoded_bytes=SPILLS, spill_dir=str(tmp_path), lossless=store) as cache:
        audio_io.read_mono(path, 100, 500, cache=cache)
        assert isinstance(next(iter(store.decoded.values())), np.memmap)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.flac"]  # an unlinked scratch file


def test_a_nan_deep_in_a_float_file_read_in_segments_is_still_a_reject(tmp_path):
    x = _noise(2.0, level=0.5)
    x[30_000] = np.nan
    path = _write(tmp_path / "nan.wav", x, format="WAV", subtype="FLOAT")
    with HandleCache() as cache:
        with pytest.raises(BadSourceError, match="NaN"):
            for _ in range(10):
                audio_io.read_mono(path, 0, 5000, cache=cache)  # the segment is clean, the file is not
        assert not cache._lossless.decoded
