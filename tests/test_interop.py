"""Shards load in PyArrow, Polars, Hugging Face `datasets` and DuckDB; the CLI's export
and plan commands work on a real run, and their errors (an unknown split, a target that is
a file, a bad recipe) are one clear message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from engine.cli import main
from engine.recipe import load_recipe
from engine.run_record import shard_files
from engine.runtime import run

from .conftest import small_recipe, write_recipe

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def arrow_out(ray_local, demo_corpus, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("interop")
    data = small_recipe(demo_corpus, splits={"train": {"samples": 30}, "test": {"samples": 10}})
    out = d / "arrow"
    run(load_recipe(write_recipe(d / "r.yaml", data)), out, progress=False)
    return out


@pytest.fixture(scope="module")
def parquet_out(ray_local, demo_corpus, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("interop_pq")
    data = small_recipe(demo_corpus, splits={"train": {"samples": 30}})
    data["output"]["format"] = "parquet"
    out = d / "parquet"
    run(load_recipe(write_recipe(d / "r.yaml", data)), out, progress=False)
    return out


@pytest.fixture(scope="module")
def reference(arrow_out) -> Path:
    """A finished run to export from: the Arrow output."""
    return arrow_out


def test_schema_carries_recipe_hash_version_and_huggingface_features(arrow_out):
    import pyarrow.ipc as ipc

    schema = ipc.open_stream(pa.memory_map(str(shard_files(arrow_out, "train")[0]))).schema
    meta = json.loads(schema.metadata[b"shardsmith"])
    manifest = json.loads((arrow_out / "run.json").read_text())
    assert meta["recipe_hash"] == manifest["recipe_hash"]
    assert meta["engine_version"]
    hf = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert hf["audio"] == {"sampling_rate": 16000, "_type": "Audio"}
    assert schema.field("audio").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert pa.types.is_fixed_size_list(schema.field("embedding").type)
    source = schema.field("sources").type.value_type
    assert [source.field(i).name for i in range(source.num_fields)] == [
        "pool", "item", "start_s", "duration_s", "gain_db"]


def test_polars_reads_arrow_shards(arrow_out):
    import polars as pl

    frames = [pl.read_ipc_stream(f) for f in shard_files(arrow_out)]
    df = pl.concat(frames)
    assert df.height == 40
    assert df["sample_id"].n_unique() == 40
    assert set(df["split"].unique()) == {"train", "test"}


def test_huggingface_datasets_types_audio_and_bytes_decode(arrow_out):
    import datasets

    ds = datasets.Dataset.from_file(str(shard_files(arrow_out, "train")[0]))
    assert isinstance(ds.features["audio"], datasets.Audio)
    assert ds.features["audio"].sampling_rate == 16000
    ds = ds.cast_column("audio", datasets.Audio(decode=False))
    item = ds[0]["audio"]
    x, sr = sf.read(__import__("io").BytesIO(item["bytes"]))
    assert sr == 16000 and len(x) > 1000 and np.isfinite(x).all()
    assert item["path"].endswith(".flac")


def test_huggingface_load_dataset_reads_a_whole_split(arrow_out, tmp_path):
    import datasets

    files = [str(f) for f in shard_files(arrow_out, "train")]
    ds = datasets.load_dataset("arrow", data_files={"train": files}, split="train", cache_dir=str(tmp_path))
    assert ds.num_rows == 30
    assert isinstance(ds.features["audio"], datasets.Audio)


def test_duckdb_reads_parquet_output(parquet_out):
    import duckdb

    pattern = str(parquet_out / "train" / "*.parquet")
    n, distinct, sr = duckdb.sql(
        f"select count(*), count(distinct sample_id), min(sampling_rate) from read_parquet('{pattern}')"
    ).fetchall()[0]
    assert (n, distinct, sr) == (30, 30, 16000)
    pools = duckdb.sql(
        f"select distinct unnest(sources).pool as p from read_parquet('{pattern}') order by p"
    ).fetchall()
    assert pools == [("cabin",), ("speech",)]


def test_export_writes_wav_files_with_provenance_sidecars(arrow_out, tmp_path, capsys):
    assert main(["export", str(arrow_out), "--split", "train", "--n", "3", "--to", str(tmp_path / "x")]) == 0
    wavs = sorted((tmp_path / "x").glob("*.wav"))
    assert len(wavs) == 3
    x, sr = sf.read(wavs[0])
    assert sr == 16000 and len(x) > 0
    side = json.loads(wavs[0].with_suffix(".json").read_text())
    assert side["sample_id"] == wavs[0].stem
    assert side["sources"][0]["pool"] == "speech" and "snr_db" in side["params"]["noise"][0]


def test_export_of_an_unknown_split_is_a_clear_error(arrow_out, tmp_path, capsys):
    assert main(["export", str(arrow_out), "--split", "nope", "--to", str(tmp_path)]) == 1
    assert "no split 'nope'" in capsys.readouterr().err


def test_export_to_a_path_that_is_a_file_is_one_clear_error(reference, tmp_path, capsys):
    target = tmp_path / "listen"
    target.write_text("a file")
    code = main(["export", str(reference), "--split", "train", "--n", "2", "--to", str(target)])
    err = capsys.readouterr().err
    assert code == 1 and str(target) in err and "Traceback" not in err, err
    assert target.read_text() == "a file"


def _cut_after_schema(shard: Path) -> None:
    """Cut an Arrow stream shard right after its schema: it still reads, as 0 rows."""
    import pyarrow.ipc as ipc

    reader = pa.BufferReader(shard.read_bytes())
    ipc.read_message(reader)
    with open(shard, "r+b") as f:
        f.truncate(reader.tell())


def _flip_a_byte(shard: Path) -> None:
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage, why", [(_cut_after_schema, "it was cut short"),
                                         (_flip_a_byte, "sha256 does not match")])
def test_export_of_a_damaged_shard_is_refused_and_writes_nothing(arrow_out, tmp_path, capsys, damage, why):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(arrow_out, out)
    kept = tmp_path / "earlier"  # an earlier export into the same folder stays as it was
    assert main(["export", str(out), "--split", "train", "--n", "2", "--to", str(kept)]) == 0
    before = _tree(kept)
    second = shard_files(out, "train")[1]  # 20 + 10 rows: exporting 30 reads both shards
    damage(second)
    capsys.readouterr()
    for to in (kept, tmp_path / "new"):
        code = main(["export", str(out), "--split", "train", "--n", "100", "--to", str(to)])
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" not in err, err
        assert f"{second}: shard is damaged" in err and why in err and "shardsmith run" in err, err
    assert _tree(kept) == before
    assert not (tmp_path / "new").exists()


def test_plan_prints_splits_shards_and_pools(demo_corpus, tmp_path, capsys):
    r = write_recipe(tmp_path / "r.yaml", small_recipe(demo_corpus))
    assert main(["plan", str(r), "--set", "splits.train.samples=45"]) == 0
    text = capsys.readouterr().out
    assert "train" in text and "45 samples" in text and "3 shards" in text
    assert "pool cabin" in text and "held out" in text


def test_a_recipe_error_exits_2_with_the_field_named(tmp_path, capsys):
    r = tmp_path / "bad.yaml"
    r.write_text("name: x\nseed: 1\npools: {a: {paths: ['*.wav']}}\nsplits: {train: {samples: 5}}\n"
                 "synth: {type: speech_noise_mix, speech: a, noise: [{pool: a, snr_db_range: [20, 5]}]}\n")
    assert main(["plan", str(r)]) == 2
    assert "synth.noise[0].snr_db_range" in capsys.readouterr().err


def test_a_rerun_with_nothing_to_do_says_so(ray_local, arrow_out, demo_corpus, tmp_path):
    from engine.run_record import read_run_record

    data = read_run_record(arrow_out)["recipe"]
    recipe = load_recipe(write_recipe(tmp_path / "same.yaml", data))
    summary = run(recipe, arrow_out, progress=False)
    assert (summary.shards_written, summary.status) == (0, "complete")
    assert "nothing to write: every shard was already done" in summary.describe()
