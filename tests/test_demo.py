"""The procedural demo corpus: layout, determinism, and that each kind of data is what it
claims to be (voices differ in pitch, noises differ in colour, rooms reverberate)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from engine.demo import (
    DEMO_VOICES,
    DEMO_WORDS,
    IMAGE_LABELS,
    NOISE_TYPES,
    generate_demo_corpus,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("demo")
    return root, generate_demo_corpus(root, seed=0)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def _read_manifest(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _estimate_f0_hz(x: np.ndarray, sr: int) -> list[float]:
    """Autocorrelation pitch of the loud, clearly periodic 40 ms frames."""
    x = signal.sosfiltfilt(signal.butter(4, 900, fs=sr, output="sos"), x)
    n = int(0.04 * sr)
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[:: n // 2]
    energy = np.mean(frames**2, axis=1)
    lo, hi = int(sr / 400), int(sr / 70)
    f0 = []
    for frame in frames[energy > 0.2 * energy.max()]:
        spec = np.fft.rfft((frame - frame.mean()) * np.hanning(n), 2 * n)
        ac = np.fft.irfft(np.abs(spec) ** 2)[:n]
        ac /= ac[0]
        k = int(np.argmax(ac[lo:hi]))
        if ac[lo + k] > 0.3:
            f0.append(sr / (lo + k))
    return f0


def _spectrum(path: Path) -> tuple[np.ndarray, np.ndarray]:
    x, sr = sf.read(path, always_2d=True)
    f, p = signal.welch(x.mean(axis=1), sr, nperseg=2048)
    return f[1:], p[1:]


def _flatness(p: np.ndarray) -> float:
    return float(np.exp(np.mean(np.log(p + 1e-30))) / np.mean(p))


def test_summary_counts_match_the_files_on_disk(corpus):
    root, summary = corpus
    assert summary["root"] == str(root)
    assert summary["speech_files"] == len(list(root.glob("speech/*/*.flac"))) == 120
    assert summary["noise_files"] == len(list(root.glob("noise/*/*.wav")))
    assert summary["rir_files"] == len(list(root.glob("rir/*.wav"))) == 6
    assert summary["foregrounds"] == len(list(root.glob("images/foregrounds/*.png"))) == 12
    assert summary["images"] == len(list(root.glob("images/backgrounds/*.png"))) + len(
        list(root.glob("images/photos/*.png"))) == 48
    assert 120.0 <= summary["speech_seconds"] <= 480.0
    # Enough noise to be useful, little enough that generation stays fast.
    assert 300.0 <= summary["noise_seconds"] <= 12 * 60
    assert not list(root.rglob("*.tmp")), "temporary files were left behind"


def test_same_seed_gives_byte_identical_files_and_rerun_rewrites_stale_ones(corpus, tmp_path):
    root, _ = corpus
    expected = _hashes(root)
    # A half-written or outdated corpus is already there: a re-run must repair it.
    (tmp_path / "speech/v1").mkdir(parents=True)
    (tmp_path / "speech/v1/v1-000.flac").write_bytes(b"truncated")
    (tmp_path / "speech/manifest.csv").write_text("path,text,speaker\nold.flac,yes,v1\n")
    generate_demo_corpus(tmp_path, seed=0)
    assert _hashes(tmp_path) == expected


def test_a_different_seed_gives_different_data():
    # Private builders, so the check costs milliseconds instead of a second corpus.
    from engine import demo

    voice = DEMO_VOICES[0]
    assert not np.array_equal(demo._speech_utterance(0, voice, 0, "yes"),
                              demo._speech_utterance(1, voice, 0, "yes"))
    assert not np.array_equal(demo._noise_file(0, "noise/white/white-0.wav", "white", 1.0,
                                               16000, 1),
                              demo._noise_file(1, "noise/white/white-0.wav", "white", 1.0,
                                               16000, 1))
    assert not np.array_equal(demo._rir(0, 0), demo._rir(1, 0))


def test_negative_seed_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        generate_demo_corpus(tmp_path, seed=-1)


@pytest.mark.parametrize(
    ("manifest", "columns", "pattern"),
    [
        ("speech/manifest.csv", ["path", "text", "speaker"], "*/*.flac"),
        ("noise/manifest.csv", ["path", "noise_type"], "*/*.wav"),
        ("images/manifest.csv", ["path", "label"], "photos/*.png"),
        ("images/foregrounds/manifest.csv", ["path", "label"], "*.png"),
    ],
)
def test_manifests_list_exactly_the_files_on_disk(corpus, manifest, columns, pattern):
    root, _ = corpus
    path = root / manifest
    header, rows = _read_manifest(path)
    assert header == columns
    listed = [row["path"] for row in rows]
    assert listed == sorted(listed)
    on_disk = sorted(str(p.relative_to(path.parent)) for p in path.parent.glob(pattern))
    assert listed == on_disk


def test_manifest_labels_are_consistent_with_paths(corpus):
    root, _ = corpus
    _, speech = _read_manifest(root / "speech/manifest.csv")
    assert {r["speaker"] for r in speech} == {v.name for v in DEMO_VOICES}
    assert all(r["path"].startswith(r["speaker"] + "/") for r in speech)
    for voice in DEMO_VOICES:
        words = [r["text"] for r in speech if r["speaker"] == voice.name]
        assert len(words) == 20
        # Every word is spoken by every voice, so speaker and word are not confounded.
        assert set(words) == set(DEMO_WORDS)
    _, noise = _read_manifest(root / "noise/manifest.csv")
    assert all(r["path"].startswith(r["noise_type"] + "/") for r in noise)
    counts = {t: sum(r["noise_type"] == t for r in noise) for t in NOISE_TYPES}
    assert all(2 <= c <= 4 for c in counts.values()), counts
    for name in ("images/manifest.csv", "images/foregrounds/manifest.csv"):
        _, rows = _read_manifest(root / name)
        assert {r["label"] for r in rows} == set(IMAGE_LABELS)


def test_speech_files_are_16khz_mono_flac_of_1_to_4_seconds_and_not_silent(corpus):
    root, _ = corpus
    for path in sorted(root.glob("speech/*/*.flac")):
        info = sf.info(path)
        assert (info.format, info.subtype) == ("FLAC", "PCM_16"), path
        assert (info.samplerate, info.channels) == (16000, 1), path
        assert 1.0 <= info.duration <= 4.0, path
        x, _ = sf.read(path)
        assert np.isfinite(x).all()
        assert 0.1 < np.abs(x).max() < 0.9, path
        # Short silences at both ends, speech in between.
        edge = int(0.09 * 16000)
        body_rms = np.sqrt(np.mean(x**2))
        assert np.sqrt(np.mean(x[:edge] ** 2)) < 0.01 * body_rms, path
        assert np.sqrt(np.mean(x[-edge:] ** 2)) < 0.01 * body_rms, path


def test_the_six_voices_have_distinct_pitch(corpus):
    root, _ = corpus
    medians = []
    for voice in DEMO_VOICES:
        f0 = []
        for path in sorted(root.glob(f"speech/{voice.name}/*.flac")):
            x, sr = sf.read(path)
            f0 += _estimate_f0_hz(x, sr)
        assert len(f0) > 100, voice.name
        medians.append(float(np.median(f0)))
        assert medians[-1] == pytest.approx(voice.f0_hz, rel=0.1), voice.name
    assert medians == sorted(medians)
    assert np.all(np.diff(np.log(medians)) > np.log(1.08)), medians


def test_the_same_word_sounds_more_alike_than_different_words(corpus):
    root, _ = corpus
    _, rows = _read_manifest(root / "speech/manifest.csv")

    def profile(path: Path) -> np.ndarray:
        x, sr = sf.read(path)
        f, p = signal.welch(x, sr, nperseg=512)
        v = np.log(p + 1e-12)
        return (v - v.mean()) / v.std()

    by_word: dict[str, list[np.ndarray]] = {}
    for row in rows:
        if row["speaker"] == "v1":
            by_word.setdefault(row["text"], []).append(profile(root / "speech" / row["path"]))
    same = np.mean([np.linalg.norm(a - b) for a, b in by_word.values()])
    words = sorted(by_word)
    different = np.mean([np.linalg.norm(by_word[a][0] - by_word[b][0])
                         for i, a in enumerate(words) for b in words[i + 1:]])
    assert same < different


def test_noise_files_cover_every_type_at_mixed_rates_and_channels(corpus):
    root, _ = corpus
    infos = {str(p.relative_to(root / "noise")): sf.info(p)
             for p in sorted(root.glob("noise/*/*.wav"))}
    assert {rel.split("/")[0] for rel in infos} == set(NOISE_TYPES)
    assert {i.samplerate for i in infos.values()} >= {16000, 22050, 44100}
    assert {i.channels for i in infos.values()} == {1, 2}
    for rel, info in infos.items():
        assert (info.format, info.subtype) == ("WAV", "PCM_16"), rel
        assert 5.0 <= info.duration <= 120.0, rel
        x, _ = sf.read(root / "noise" / rel)
        assert np.isfinite(x).all() and 0.05 < np.abs(x).max() < 0.9, rel
    assert infos["car/car-0.wav"].duration >= 120.0
    assert sum(i.duration for i in infos.values()) <= 12 * 60


def test_noise_colours_are_ordered_white_pink_brown(corpus):
    root, _ = corpus
    flat = {}
    low_share = {}
    for kind in ("white", "pink", "brown"):
        f, p = _spectrum(root / f"noise/{kind}/{kind}-0.wav")
        flat[kind] = _flatness(p)
        low_share[kind] = float(p[f < 200].sum() / p.sum())
    assert flat["white"] > 0.9
    assert flat["white"] > flat["pink"] > flat["brown"]
    assert low_share["brown"] > 0.8
    assert low_share["brown"] > low_share["pink"] > low_share["white"]


def test_noise_types_have_their_characteristic_spectra(corpus):
    root, _ = corpus

    def low_share(rel: str, cutoff_hz: float) -> float:
        f, p = _spectrum(root / "noise" / rel)
        return float(p[f < cutoff_hz].sum() / p.sum())

    assert low_share("car/car-0.wav", 300) > 0.8  # engine hum and rumble
    assert low_share("road/road-0.wav", 1000) > 0.9  # low-passed
    assert low_share("rain/rain-0.wav", 1000) < 0.1  # clicks and hiss
    assert low_share("clatter/clatter-0.wav", 300) < 0.1  # metallic ringing
    # Babble is speech: most energy in the speech band, spread across it.
    f, p = _spectrum(root / "noise/babble/babble-0.wav")
    assert p[(f > 80) & (f < 4000)].sum() / p.sum() > 0.7


def test_rirs_start_with_the_direct_path_and_decay(corpus):
    root, _ = corpus
    lengths = []
    for path in sorted(root.glob("rir/rir-*.wav")):
        h, sr = sf.read(path)
        assert sr == 16000 and h.ndim == 1
        peak = int(np.argmax(np.abs(h)))
        assert 0.002 * sr <= peak <= 0.005 * sr, path  # direct path after a small delay
        assert np.abs(h).max() <= 1.0
        energy = h**2
        first = energy[: int(0.05 * sr)].sum()
        last_quarter = energy[-len(h) // 4:].sum()
        assert last_quarter < 1e-3 * first, path
        assert energy[peak + int(0.005 * sr):].sum() > 0.01 * energy[peak], "no reverb tail"
        lengths.append(len(h) / sr)
    # Rooms differ: short and long reverberation are both present.
    assert min(lengths) < 0.4 and max(lengths) > 0.8


def test_images_decode_to_the_stated_shapes(corpus):
    root, _ = corpus
    for path in sorted(root.glob("images/backgrounds/*.png")):
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert img.shape == (240, 320, 3), path
        assert img.std() > 10, path  # a scene, not a flat fill
    for path in sorted(root.glob("images/photos/*.png")):
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert img.shape == (192, 256, 3), path
    backgrounds = [cv2.imread(str(p)) for p in sorted(root.glob("images/backgrounds/*.png"))]
    assert len({b.tobytes() for b in backgrounds}) == len(backgrounds)


def test_foregrounds_are_rgba_cutouts_with_a_soft_alpha_edge(corpus):
    root, _ = corpus
    for path in sorted(root.glob("images/foregrounds/*.png")):
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert img.ndim == 3 and img.shape[2] == 4, path
        assert 64 <= max(img.shape[:2]) <= 120, path
        alpha = img[:, :, 3]
        assert (alpha == 0).any() and (alpha == 255).any(), path
        partial = ((alpha > 0) & (alpha < 255)).mean()
        assert 0.0 < partial < 0.5, path  # a soft edge, not a blurred blob
