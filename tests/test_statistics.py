"""The shared formulas and helpers the analyzers call: statistics, media extensions,
manifest tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.errors import InputError
from engine.media import find_media, media_kind
from engine.statistics import (
    effective_numbers,
    newcombe_interval,
    pairwise_mean_square,
    participation_ratio,
    squared_distances,
    vendi_score,
    wilson_interval,
)
from engine.tables import manifest_paths, read_table


def test_equal_shares_count_every_source_once():
    eff, simpson, top = effective_numbers(np.full(8, 1 / 8))
    assert eff == pytest.approx(8) and simpson == pytest.approx(8) and top == 0.125


def test_one_dominant_source_counts_as_little_more_than_one():
    eff, simpson, top = effective_numbers(np.array([0.97, 0.01, 0.01, 0.01]))
    assert 1 < simpson < eff < 1.3 and top == 0.97


def test_shares_of_a_sampled_fraction_estimate_the_whole_pool():
    # 4 tracked items, each 1/8 of all use, from a pool tracked at rate 0.5: 8 sources in all
    eff, simpson, _ = effective_numbers(np.full(4, 1 / 8), sampled_fraction=0.5)
    assert eff == pytest.approx(8.0) and simpson == pytest.approx(8.0)


def test_vendi_score_is_one_for_copies_and_m_for_far_apart_items():
    same = np.zeros((5, 3))
    far = np.eye(5) * 100.0
    assert vendi_score(pairwise_mean_square(same), 1.0) == pytest.approx(1.0)
    assert vendi_score(pairwise_mean_square(far), 1.0) == pytest.approx(5.0)


@pytest.mark.parametrize("m", [2, 7, 300])
def test_vendi_score_built_in_its_input_has_the_same_bits_and_uses_the_input(m):
    d = pairwise_mean_square(np.random.default_rng(m).normal(size=(m, 66)))
    kept = d.copy()
    expected = vendi_score(d, 1.0)
    assert np.array_equal(d, kept)  # left alone by default
    assert vendi_score(d, 1.0, overwrite=True) == expected  # exactly: coverage.json's figure
    assert not np.array_equal(d, kept)  # the kernel was built in it
    assert vendi_score(d.astype(np.float32), 1.0, overwrite=True) > 0  # not float64: a copy, as before


def test_participation_ratio_counts_independent_dimensions():
    assert participation_ratio(np.eye(4)) == pytest.approx(4.0)
    assert participation_ratio(np.ones((4, 4))) == pytest.approx(1.0)
    assert participation_ratio(np.zeros((2, 2))) is None


def test_pairwise_mean_square_is_the_squared_distance_over_the_dims():
    z = np.random.default_rng(0).standard_normal((7, 3))
    assert np.allclose(pairwise_mean_square(z, chunk=2), squared_distances(z, z) / 3)


def test_pairwise_mean_square_has_the_same_bits_whatever_the_chunk():
    # The coverage report's Vendi score and near-duplicate rates come from these bits.
    z = np.random.default_rng(3).standard_normal((61, 66))
    whole = pairwise_mean_square(z, chunk=61)
    for chunk in (1, 8, 64):
        assert np.array_equal(pairwise_mean_square(z, chunk=chunk), whole)


def test_wilson_interval_holds_the_rate_and_narrows_with_more_examples():
    lo, hi = wilson_interval(0.1, 100)
    lo2, hi2 = wilson_interval(0.1, 10_000)
    assert lo < lo2 < 0.1 < hi2 < hi
    assert wilson_interval(0.0, 10)[0] == pytest.approx(0.0, abs=1e-12)


def test_newcombe_interval_of_a_difference_and_of_exact_rates():
    lo, hi = newcombe_interval(0.01, 1000, 0.09, 1000)
    assert lo < 0.08 < hi and lo > 0
    assert newcombe_interval(0.01, None, 0.09, None) is None
    lo, hi = newcombe_interval(0.05, None, 0.05, 1000)  # a human-level estimate taken as exact
    assert lo < 0 < hi


def test_a_confidence_outside_zero_and_one_is_refused():
    with pytest.raises(InputError, match="confidence must be between 0 and 1"):
        wilson_interval(0.1, 100, confidence=95)


def test_media_kind_goes_by_the_extension_in_any_case():
    assert media_kind("a/b.FLAC") == "audio" and media_kind("x.jpeg") == "image"
    assert media_kind("notes.txt") is None and media_kind("anim.gif") is None and media_kind(".wav") is None


def test_find_media_lists_audio_and_images_below_a_folder_sorted(tmp_path: Path):
    for name in ("b/2.wav", "a/1.PNG", "c/readme.txt", "d/anim.gif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert find_media(tmp_path) == [str(tmp_path / "a/1.PNG"), str(tmp_path / "b/2.wav")]


def test_manifest_paths_resolve_from_the_manifest_folder_and_refuse_empty_rows(tmp_path: Path):
    (tmp_path / "m.csv").write_text("path,label\nclips/a.wav,x\n/abs/b.wav,y\n")
    table, written, resolved = manifest_paths(tmp_path / "m.csv")
    assert table.column_names == ["path", "label"] and written == ["clips/a.wav", "/abs/b.wav"]
    assert resolved == [tmp_path / "clips/a.wav", Path("/abs/b.wav")]
    (tmp_path / "bad.csv").write_text('path\n""\n')
    with pytest.raises(InputError, match="row 1 has an empty 'path'"):
        manifest_paths(tmp_path / "bad.csv")
    with pytest.raises(InputError, match="has no 'file' column .*; add it"):
        manifest_paths(tmp_path / "m.csv", "file", fix="add it")


def test_read_table_names_the_formats_it_reads(tmp_path: Path):
    (tmp_path / "m.xlsx").write_text("")
    with pytest.raises(InputError, match=r"must be \.csv, \.tsv, \.jsonl or \.parquet"):
        read_table(tmp_path / "m.xlsx")
    with pytest.raises(InputError, match="manifest file not found"):
        read_table(tmp_path / "missing.csv")
