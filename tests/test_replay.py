"""Replay as a public API: ``engine.replay(out, sample_id)`` and ``shardsmith replay`` make
a written row's media again from its stored params, byte for byte, for audio and image
rows; an unknown sample id, a missing output, an unfinished shard and a source file that
changed since the run are each one clear message. The outputs are written without Ray,
through the same sink a run uses (as tests/test_sink.py does)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import engine
from engine.audio.io import decode as decode_audio
from engine.cli import main
from engine.errors import InputError, ShardError, SourceChangedError
from engine.image.io import decode as decode_image
from engine.plan import make_plan
from engine.pools import index_pools
from engine.recipe import load_recipe
from engine.replayer import Replayer, SourceChangedSinceRun
from engine.sink import OutputSink
from engine.worker import make_shard

from .conftest import all_rows, small_recipe, tree_on_s3, write_recipe
from .test_image_run import composite_recipe

SR = 16000


def write_without_ray(recipe_path: Path, out: Path, shards: int | None = None) -> Path:
    """What a run writes, one shard after another in this process (the first ``shards``
    only: a partial output)."""
    recipe = load_recipe(recipe_path)
    index = index_pools(recipe)
    sink = OutputSink(out, recipe, make_plan(recipe))
    sink.on_write_start(overwrite=False)
    sink.record_pools(index)
    for k, (spec, _) in enumerate(sink.reopen(sink.resume_state(sink.listing()))):
        if shards is not None and k >= shards:
            break
        make_shard(recipe, index, spec, out)
    sink.on_write_complete(index.rejects)
    return out


@pytest.fixture(scope="module")
def audio_out(demo_corpus, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("replay_audio")
    data = small_recipe(demo_corpus, splits={"train": {"samples": 6}, "dev": {"samples": 3}})
    data["output"]["samples_per_shard"] = 4
    data["synth"]["reverb"] = {"pool": "rirs", "p": 0.5}
    data["pools"]["rirs"] = {"paths": [str(demo_corpus / "rir" / "*.wav")]}
    return write_without_ray(write_recipe(d / "r.yaml", data), d / "out")


@pytest.fixture(scope="module")
def composite_out(demo_corpus, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("replay_composite")
    data = composite_recipe(demo_corpus)  # test_image_run's, smaller
    del data["guards"]
    data["output"]["samples_per_shard"] = 3
    data["splits"] = {"train": {"samples": 4}}
    return write_without_ray(write_recipe(d / "r.yaml", data), d / "out")


@pytest.fixture(scope="module")
def augment_out(demo_corpus, tmp_path_factory) -> Path:
    """JPEG rows whose params hold what albumentations applied (``params.applied``)."""
    d = tmp_path_factory.mktemp("replay_augment")
    data = {
        "name": "t_images",
        "seed": 11,
        "output": {"format": "parquet", "samples_per_shard": 4, "image_format": "jpeg", "image_quality": 85},
        "pools": {"photos": {"kind": "image", "manifest": str(demo_corpus / "images" / "manifest.csv")}},
        "splits": {"train": {"samples": 4}},
        "synth": {"type": "image_augment", "images": "photos", "transforms": [
            {"HorizontalFlip": {"p": 0.5}}, {"GaussNoise": {"std_range": [0.02, 0.08], "p": 0.7}},
            {"ImageCompression": {"quality_range": [30, 70], "p": 0.7}}]},
    }
    return write_without_ray(write_recipe(d / "r.yaml", data), d / "out")


# --------------------------------------------------------------------------- the API


def test_every_audio_row_replays_to_its_stored_bytes(audio_out):
    rows = all_rows(audio_out)
    assert len(rows) == 9
    with Replayer(audio_out) as replayer:
        for row in rows:
            r = replayer.replay(row["sample_id"])
            assert r.media == row["audio"]["bytes"] and r.identical, row["sample_id"]
            assert r.sources == row["sources"] and r.split == row["split"]
            x, sr = decode_audio(row["audio"]["bytes"])
            assert r.sampling_rate == sr == SR and np.array_equal(r.array, x)


@pytest.mark.parametrize("fixture", ["composite_out", "augment_out"])
def test_every_image_row_replays_to_its_stored_bytes(fixture, request):
    out = request.getfixturevalue(fixture)
    rows = all_rows(out)
    assert rows
    with Replayer(out) as replayer:
        for row in rows:
            r = replayer.replay(row["sample_id"])
            assert r.media == row["image"]["bytes"] and r.identical, row["sample_id"]
            assert r.sampling_rate is None and r.media_type == "Image"
            assert r.array.shape == (row["height"], row["width"], 3) and r.array.dtype == np.uint8
            assert np.array_equal(r.array, decode_image(row["image"]["bytes"], "rgb"))
    if fixture == "augment_out":
        assert any("applied" in json.loads(row["params"]) for row in rows)


def test_engine_replay_is_the_public_function_and_stays_one(audio_out):
    import engine.replayer  # noqa: F401  (the module loaded first must not shadow the function)

    row = all_rows(audio_out, "dev")[2]
    assert "replay" in engine.__all__ and callable(engine.replay)
    r = engine.replay(audio_out, row["sample_id"])
    assert r.identical and r.media == row["audio"]["bytes"]
    assert engine.replay(str(audio_out), row["sample_id"]).identical  # a second call, a text path


def test_a_replayer_indexes_the_pools_once(audio_out, monkeypatch):
    import engine.replayer as replayer_module

    calls = []
    real = replayer_module.index_pools
    monkeypatch.setattr(replayer_module, "index_pools", lambda recipe: calls.append(1) or real(recipe))
    with Replayer(audio_out) as replayer:
        with pytest.raises(InputError):
            replayer.replay("nope")  # an unknown id is found out before any indexing
        assert calls == []
        for row in all_rows(audio_out, "train")[:3]:
            assert replayer.replay(row["sample_id"]).identical
    assert calls == [1]


def test_an_unknown_sample_id_suggests_the_right_one(audio_out):
    with Replayer(audio_out) as replayer:
        for wrong, meant in [("t_in_car-train-3", "t_in_car-train-000000003"),
                             ("t_in_car-trian-000000003", "t_in_car-train-000000003"),
                             ("t_in_car-dev-000000002.flac", "t_in_car-dev-000000002"),
                             ("speech-7", None)]:
            with pytest.raises(InputError) as err:
                replayer.replay(wrong)
            msg = str(err.value)
            assert repr(wrong) in msg and "train: t_in_car-train-000000000 … t_in_car-train-000000005" in msg
            assert "dev: t_in_car-dev-000000000 … t_in_car-dev-000000002" in msg
            if meant:
                assert f"did you mean {meant!r}?" in msg
        with pytest.raises(InputError, match="no row of .* has it\\. "):
            replayer.replay("t_in_car-train-000000006")  # one past the split's last row


def test_a_row_of_an_unfinished_shard_says_to_resume(demo_corpus, tmp_path):
    data = small_recipe(demo_corpus, splits={"train": {"samples": 6}})
    data["output"]["samples_per_shard"] = 3
    out = write_without_ray(write_recipe(tmp_path / "r.yaml", data), tmp_path / "out", shards=1)
    with Replayer(out) as replayer:
        assert replayer.replay("t_in_car-train-000000002").identical
        with pytest.raises(ShardError, match="train-00001-of-00002.arrow is not done .*resume the run"):
            replayer.replay("t_in_car-train-000000003")


def test_a_folder_that_is_not_an_output_is_named(tmp_path):
    with pytest.raises(ShardError, match="no run.json; is this a shardsmith output folder"):
        engine.replay(tmp_path, "x-train-000000000")


def _noise(seconds: float, seed: int) -> np.ndarray:
    return (0.05 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.fixture()
def own_noise_out(demo_corpus, tmp_path) -> tuple[Path, Path]:
    """An output whose noise pool is two files of this test's own (so it may change them)."""
    noise = tmp_path / "noise"
    noise.mkdir()
    for k in range(2):
        sf.write(noise / f"n{k}.wav", _noise(8.0, k), SR, subtype="PCM_16")
    data = small_recipe(demo_corpus, splits={"train": {"samples": 2}})
    data["pools"]["cabin"] = {"paths": [str(noise / "*.wav")]}
    return write_without_ray(write_recipe(tmp_path / "r.yaml", data), tmp_path / "out"), noise


def _noise_of(out: Path) -> str:
    row = all_rows(out, "train")[0]
    return next(s["item"] for s in row["sources"] if s["pool"] == "cabin")


def test_a_source_rewritten_since_the_run_is_named_and_not_replayed(own_noise_out):
    out, noise = own_noise_out
    used = Path(_noise_of(out)).name
    assert engine.replay(out, "t_in_car-train-000000000").identical
    sf.write(noise / used, _noise(8.0, 99), SR, subtype="PCM_16")  # other audio, same length
    with pytest.raises(SourceChangedError) as err:
        engine.replay(out, "t_in_car-train-000000000")
    assert isinstance(err.value, SourceChangedSinceRun)
    msg = str(err.value)
    assert str(noise / used) in msg and "changed since the run indexed its pool" in msg
    assert "t_in_car-train-000000000 cannot be replayed" in msg and "Restore the file" in msg


def test_a_source_deleted_since_the_run_is_named(own_noise_out):
    out, noise = own_noise_out
    used = Path(_noise_of(out)).name
    (noise / used).unlink()
    with pytest.raises(SourceChangedSinceRun, match=f"{used}: changed since .*no longer an item of pool 'cabin'"):
        engine.replay(out, "t_in_car-train-000000000")


def test_a_row_of_an_output_on_an_object_store_replays(audio_out, tmp_path, capsys):
    row = all_rows(audio_out, "dev")[1]
    with tree_on_s3(audio_out, "outputs", "runs/a") as uri:
        assert engine.replay(uri, row["sample_id"]).media == row["audio"]["bytes"]
        assert main(["replay", uri, row["sample_id"], "--check", "--to", str(tmp_path / "x.flac")]) == 0
    assert (tmp_path / "x.flac").read_bytes() == row["audio"]["bytes"]


# --------------------------------------------------------------------------- the command


def test_replay_check_passes_on_a_written_row(audio_out, capsys):
    assert main(["replay", str(audio_out), "t_in_car-train-000000004", "--check"]) == 0
    assert "byte-identical" in capsys.readouterr().out


def test_replay_to_a_file_writes_the_stored_bytes(audio_out, tmp_path, capsys):
    row = all_rows(audio_out, "train")[4]
    assert main(["replay", str(audio_out), row["sample_id"], "--to", str(tmp_path / "x.flac")]) == 0
    assert (tmp_path / "x.flac").read_bytes() == row["audio"]["bytes"]
    # a .wav converts without loss; a folder takes the row's own file name
    assert main(["replay", str(audio_out), row["sample_id"], "--to", str(tmp_path / "x.wav")]) == 0
    x, sr = sf.read(tmp_path / "x.wav", dtype="float32")
    assert sr == SR and np.array_equal(x, decode_audio(row["audio"]["bytes"])[0])
    assert main(["replay", str(audio_out), row["sample_id"], "--to", str(tmp_path)]) == 0
    assert (tmp_path / row["audio"]["path"]).read_bytes() == row["audio"]["bytes"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_replay_of_an_image_to_a_file(composite_out, tmp_path):
    row = all_rows(composite_out)[1]
    assert main(["replay", str(composite_out), row["sample_id"], "--to", str(tmp_path / "a.png"), "--check"]) == 0
    assert (tmp_path / "a.png").read_bytes() == row["image"]["bytes"]


def test_replay_check_fails_on_a_mismatch(audio_out, monkeypatch, capsys):
    import engine.replayer as replayer_module

    real = replayer_module.replay_sample

    def off_by_one_byte(synth, row):
        sample = real(synth, row)
        data = bytearray(sample.columns["audio"]["bytes"])
        data[-1] ^= 1
        sample.columns["audio"] = {**sample.columns["audio"], "bytes": bytes(data)}
        return sample

    monkeypatch.setattr(replayer_module, "replay_sample", off_by_one_byte)
    assert main(["replay", str(audio_out), "t_in_car-train-000000001", "--check"]) == 1
    err = capsys.readouterr().err
    assert "the replay differs from the stored row" in err and "first difference at byte" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, code, words", [
    (["{out}", "t_in_car-train-7"], 1, "give --to FILE to write the row's media, --check"),
    (["{out}", "t_in_car-train-5", "--check"], 1, "did you mean 't_in_car-train-000000005'?"),
    (["{out}", "t_in_car-train-000000001", "--to", "{tmp}/x.mp3"], 1,
     "the row's media is .flac (t_in_car-train-000000001.flac); name the file .flac for the stored bytes or .wav"),
    (["{tmp}/missing", "t_in_car-train-000000001", "--check"], 1, "OUT {tmp}/missing: does not exist"),
    (["{tmp}", "t_in_car-train-000000001", "--check"], 1, "no run.json; is this a shardsmith output folder"),
])
def test_replay_errors_are_one_clear_message(audio_out, tmp_path, capsys, argv, code, words):
    fill = {"out": str(audio_out), "tmp": str(tmp_path)}
    assert main(["replay", *[a.format(**fill) for a in argv]]) == code
    err = capsys.readouterr().err
    assert words.format(**fill) in err and "Traceback" not in err, err
    assert not (tmp_path / "x.mp3").exists()


def test_replay_of_a_changed_source_is_a_clear_cli_error(own_noise_out, capsys):
    out, noise = own_noise_out
    used = Path(_noise_of(out)).name
    sf.write(noise / used, _noise(8.0, 99), SR, subtype="PCM_16")
    assert main(["replay", str(out), "t_in_car-train-000000000", "--check"]) == 1
    err = capsys.readouterr().err
    assert f"{noise / used}: changed since the run indexed its pool" in err and "Traceback" not in err
