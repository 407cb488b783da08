"""Pools read where corpora live (issue 12): ``format: table`` over Hugging Face Parquet
(written by ``datasets``), a ``datasets.save_to_disk`` folder, image tables, and a
shardsmith output used as the pool of a second run (chaining); bad containers end in
rejects or clear errors; the new pool fields leave older recipes' hashes alone."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from engine.errors import InputError
from engine.pools import index_pools
from engine.recipe import parse_recipe, recipe_hash
from engine.synth_checks import CHECKS, check_context

from .conftest import small_recipe

AUDIO = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _speech_rows(corpus: Path, n: int = 24) -> list[dict]:
    rows = list(csv.DictReader(open(corpus / "speech" / "manifest.csv")))[:n]
    return [{"audio": {"bytes": (corpus / "speech" / r["path"]).read_bytes(), "path": r["path"]},
             "text": r["text"], "speaker": r["speaker"]} for r in rows]


def _hf_dataset(rows: list[dict], feature: str = "audio"):
    from datasets import Audio, Dataset, Image

    t = pa.Table.from_pylist(rows, schema=pa.schema([(feature, AUDIO)] + [
        (k, pa.string()) for k in rows[0] if k != feature]))
    return Dataset(t).cast_column(feature, Audio(sampling_rate=16000) if feature == "audio" else Image())


def _recipe(corpus: Path, base: Path, speech_pool: dict) -> dict:
    data = small_recipe(corpus)
    data["pools"]["speech"] = speech_pool
    data["splits"] = {"train": {"samples": 12}}
    data["output"]["samples_per_shard"] = 6
    return parse_recipe(data, base_dir=base)


@pytest.fixture(scope="module")
def hub(demo_corpus, tmp_path_factory):
    """24 utterances as two Parquet files written by `datasets` (the Hub's layout)."""
    root = tmp_path_factory.mktemp("hub")
    ds = _hf_dataset(_speech_rows(demo_corpus))
    (root / "data").mkdir()
    ds.shard(2, 0).to_parquet(str(root / "data" / "train-00000-of-00002.parquet"))
    ds.shard(2, 1).to_parquet(str(root / "data" / "train-00001-of-00002.parquet"))
    ds.save_to_disk(str(root / "saved"))
    return root


def test_a_hub_parquet_pool_has_one_item_per_row_with_its_labels(hub, demo_corpus):
    recipe = _recipe(demo_corpus, hub, {"format": "table", "paths": ["data/*.parquet"]})
    pool = index_pools(recipe).pools["speech"]
    assert len(pool) == 24 and pool.items[0] == "data/train-00000-of-00002.parquet#row=0"
    assert pool.items[-1] == "data/train-00001-of-00002.parquet#row=11"
    source = _speech_rows(demo_corpus)
    first = pq.read_table(hub / "data" / "train-00000-of-00002.parquet").slice(0, 1).to_pylist()[0]
    assert pool.labels[0] == {"text": first["text"], "speaker": first["speaker"]}
    data, rate = sf.read(io.BytesIO(first["audio"]["bytes"]))
    assert pool.duration_s[0] == pytest.approx(len(data) / rate) and {r["text"] for r in source} >= {first["text"]}


def test_a_save_to_disk_folder_is_the_same_pool(hub, demo_corpus):
    saved = index_pools(_recipe(demo_corpus, hub, {"format": "table", "paths": ["saved/"]})).pools["speech"]
    parquet = index_pools(_recipe(demo_corpus, hub, {"format": "table", "paths": ["data/*.parquet"]})).pools["speech"]
    assert saved.items[0] == "saved/data-00000-of-00001.arrow#row=0"
    assert sorted(map(str, saved.labels)) == sorted(map(str, parquet.labels))
    assert sorted(saved.duration_s) == pytest.approx(sorted(parquet.duration_s))


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_a_table_pool_keeps_the_synthesizer_contract(hub, demo_corpus, tmp_path, check):
    recipe = _recipe(demo_corpus, hub, {"format": "table", "paths": ["data/*.parquet"]})
    check(check_context(recipe, tmp_path, samples=6))


def test_rows_are_made_of_the_labelled_table_row(hub, demo_corpus, tmp_path):
    """The speech in a row is the audio of the table row its sources name, and the row
    carries that table row's transcript."""
    from engine.shards import read_shard
    from engine.synth import build_synthesizer
    from engine.worker import make_shard
    from engine.plan import make_plan

    recipe = _recipe(demo_corpus, hub, {"format": "table", "paths": ["data/*.parquet"]})
    index = index_pools(recipe)
    make_shard(recipe, index, make_plan(recipe).shards[0], tmp_path)
    rows = read_shard(next(tmp_path.rglob("*.arrow"))).to_pylist()
    tables = {f.name: pq.read_table(f).to_pylist() for f in (hub / "data").glob("*.parquet")}
    synth = build_synthesizer(recipe, index)
    for row in rows:
        item = row["sources"][0]["item"]
        name, key = item.split("#row=")
        source = tables[Path(name).name][int(key)]
        assert row["text"] == source["text"] and row["speaker"] == source["speaker"]
        parts = synth.render(json.loads(row["params"]))
        clean, _ = sf.read(io.BytesIO(source["audio"]["bytes"]), dtype="float32")
        # the speech component is the table row's audio, level-scaled (no reverb here)
        gain = float(np.dot(parts.speech, clean) / np.dot(clean, clean))
        assert np.allclose(parts.speech, gain * clean, atol=1e-4)


def test_table_rows_may_name_files_beside_the_table(demo_corpus, tmp_path):
    rows = _speech_rows(demo_corpus, 6)
    for r in rows:
        target = tmp_path / "clips" / Path(r["audio"]["path"]).name
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(r["audio"]["bytes"])
        r["audio"] = {"bytes": None, "path": f"clips/{target.name}"}
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([("audio", AUDIO), ("text", pa.string()),
                                                                ("speaker", pa.string())])), tmp_path / "t.parquet")
    pool = index_pools(_recipe(demo_corpus, tmp_path, {"format": "table", "paths": ["t.parquet"]})).pools["speech"]
    assert len(pool) == 6 and pool.duration_s.min() > 0


def test_bad_tables_and_rows_are_rejected_with_reasons(demo_corpus, tmp_path):
    rows = _speech_rows(demo_corpus, 4)
    rows[2]["audio"] = {"bytes": b"RIFF not really audio", "path": "x.wav"}
    schema = pa.schema([("audio", AUDIO), ("text", pa.string()), ("speaker", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"PAR1 this is no parquet file")
    pq.write_table(pa.Table.from_pylist([], schema=schema), tmp_path / "c.parquet")
    index = index_pools(_recipe(demo_corpus, tmp_path, {"format": "table", "paths": ["*.parquet"]}))
    reasons = {r["path"]: r["reason"] for r in index.rejects}
    assert "not decodable audio" in reasons["a.parquet#row=2"]
    assert "not a readable Parquet or Arrow table" in reasons[str(tmp_path / "b.parquet")]
    assert "empty table" in reasons[str(tmp_path / "c.parquet")]
    assert len(index.pools["speech"]) == 3


def test_a_table_without_an_audio_struct_names_the_column_and_the_fix(demo_corpus, tmp_path):
    pq.write_table(pa.table({"wav": [b"x"], "text": ["a"]}), tmp_path / "t.parquet")
    with pytest.raises(InputError, match=r"t\.parquet: has no column 'audio'.*set pools\.speech\.media_column"):
        index_pools(_recipe(demo_corpus, tmp_path, {"format": "table", "paths": ["t.parquet"]}))
    with pytest.raises(InputError, match=r"column 'wav' is binary, not the Audio/Image struct"):
        index_pools(_recipe(demo_corpus, tmp_path, {"format": "table", "paths": ["t.parquet"], "media_column": "wav"}))


def test_a_key_column_names_the_items(hub, demo_corpus, tmp_path):
    rows = _speech_rows(demo_corpus, 5)
    for i, r in enumerate(rows):
        r["id"] = f"utt-{i}"
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    pool = index_pools(_recipe(demo_corpus, tmp_path, {"format": "table", "paths": ["t.parquet"],
                                                       "key_column": "id", "label_columns": ["text"]})).pools["speech"]
    assert pool.items == [f"t.parquet#id=utt-{i}" for i in range(5)]
    assert pool.labels[0] == {"text": rows[0]["text"]}


def test_an_image_table_pool(demo_corpus, tmp_path):
    photos = sorted((demo_corpus / "images" / "photos").rglob("*.png"))[:6]
    rows = [{"image": {"bytes": p.read_bytes(), "path": p.name}, "label": p.parent.name} for p in photos]
    _hf_dataset(rows, "image").to_parquet(str(tmp_path / "photos.parquet"))
    data = {"name": "img", "seed": 1, "pools": {"photos": {"kind": "image", "format": "table",
                                                           "paths": ["photos.parquet"]}},
            "splits": {"train": {"samples": 6}}, "output": {"samples_per_shard": 6},
            "synth": {"type": "image_augment", "images": "photos", "transforms": [{"HorizontalFlip": {"p": 0.5}}]}}
    recipe = parse_recipe(data, base_dir=tmp_path)
    pool = index_pools(recipe).pools["photos"]
    assert len(pool) == 6 and pool.width.min() > 0 and pool.labels[0]["label"] == photos[0].parent.name
    for check in CHECKS:
        check(check_context(recipe, tmp_path / "chk", samples=4))


def test_new_pool_fields_at_their_defaults_leave_the_recipe_hash_alone(demo_corpus):
    data = small_recipe(demo_corpus)
    before = recipe_hash(parse_recipe(data))
    data["pools"]["cabin"]["format"] = "files"
    assert recipe_hash(parse_recipe(data)) == before


def test_table_options_need_format_table(demo_corpus):
    from engine.errors import RecipeError

    data = small_recipe(demo_corpus)
    data["pools"]["cabin"]["media_column"] = "audio"
    with pytest.raises(RecipeError, match="media_column, key_column and label_columns go with format: table"):
        parse_recipe(data)


@pytest.mark.ray
def test_a_shardsmith_output_is_the_pool_of_a_second_run(ray_local, demo_corpus, tmp_path):
    """Chaining: stage 2 reads stage 1's rows as items; each row names its upstream
    sample and recipe, and keeps stage 1's labels."""
    from engine.runtime import run
    from engine.shards import read_shard

    stage1 = parse_recipe({**small_recipe(demo_corpus), "splits": {"train": {"samples": 12}}}, base_dir=tmp_path)
    run(stage1, tmp_path / "stage1", workers=1, progress=False)
    up = {r["sample_id"]: r for f in (tmp_path / "stage1").rglob("*.arrow") for r in read_shard(f).to_pylist()}

    data = small_recipe(demo_corpus)
    data.update(name="stage2", splits={"train": {"samples": 8}})
    data["pools"]["speech"] = {"format": "table", "paths": ["stage1/"]}
    data["pools"]["cabin"].pop("holdout")
    data["splits"] = {"train": {"samples": 8}}
    stage2 = parse_recipe(data, base_dir=tmp_path)
    pool = index_pools(stage2).pools["speech"]
    assert len(pool) == 12 and pool.items[0] == "stage1/train/train-00000-of-00001.arrow#row=0"
    out = tmp_path / "stage2"
    run(stage2, out, workers=1, progress=False)
    rows = [r for f in out.rglob("*.arrow") for r in read_shard(f).to_pylist()]
    assert len(rows) == 8
    for row in rows:
        parent = up[row["upstream_sample_id"]]
        assert row["upstream_recipe_hash"] == recipe_hash(stage1)
        assert row["text"] == parent["text"] and row["speaker"] == parent["speaker"]
        assert row["sources"][0]["item"].startswith("stage1/train/")


def test_a_common_voice_tsv_with_clips_beside_it(demo_corpus, tmp_path):
    """Common Voice's layout: an unquoted TSV whose `path` names MP3 files inside clips/
    (media_dir), sentences with bare quote marks; its columns become labels."""
    rows = list(csv.DictReader(open(demo_corpus / "speech" / "manifest.csv")))[:6]
    (tmp_path / "en" / "clips").mkdir(parents=True)
    lines = ["client_id\tpath\tsentence\tgender"]
    for i, r in enumerate(rows):
        x, rate = sf.read(demo_corpus / "speech" / r["path"], dtype="float32")
        sf.write(tmp_path / "en" / "clips" / f"common_voice_en_{i}.mp3", x, rate, format="MP3")
        lines.append(f"c{i}\tcommon_voice_en_{i}.mp3\t\"{r['text']}\" she said\t{'female' if i % 2 else 'male'}")
    (tmp_path / "en" / "train.tsv").write_text("\n".join(lines) + "\n")
    recipe = _recipe(demo_corpus, tmp_path, {"manifest": "en/train.tsv", "media_dir": "clips"})
    pool = index_pools(recipe).pools["speech"]
    assert len(pool) == 6 and pool.items[0] == "en/clips/common_voice_en_0.mp3"
    assert pool.labels[0]["sentence"] == f"\"{rows[0]['text']}\" she said" and pool.labels[1]["gender"] == "female"


@pytest.fixture(scope="module")
def hub_on_s3(hub):
    """The same Parquet files and save_to_disk folder in a bucket of a real S3-compatible
    server (moto on 127.0.0.1)."""
    from .conftest import tree_on_s3

    with tree_on_s3(hub, "corpus", "hub") as uri:
        yield uri


def test_tables_on_an_object_store_give_the_same_items_and_bytes(hub_on_s3, hub, demo_corpus, tmp_path):
    from engine.plan import make_plan
    from engine.worker import make_shard

    local = _recipe(demo_corpus, hub, {"format": "table", "paths": ["data/*.parquet"]})
    remote = _recipe(demo_corpus, hub, {"format": "table", "paths": [f"{hub_on_s3}/data/*.parquet"]})
    saved = _recipe(demo_corpus, hub, {"format": "table", "paths": [f"{hub_on_s3}/saved"]})
    pl, pr, ps = (index_pools(r).pools["speech"] for r in (local, remote, saved))
    assert pr.items[0] == f"{hub_on_s3}/data/train-00000-of-00002.parquet#row=0" and len(ps) == 24
    assert pr.labels == pl.labels and list(pr.duration_s) == list(pl.duration_s)
    out_l, out_r = tmp_path / "l", tmp_path / "r"
    spec = make_plan(local).shards[0]
    make_shard(local, index_pools(local), spec, out_l)
    make_shard(remote, index_pools(remote), spec, out_r)
    from engine.shards import read_shard

    rows_l = read_shard(next(out_l.rglob("*.arrow"))).to_pylist()
    rows_r = read_shard(next(out_r.rglob("*.arrow"))).to_pylist()
    assert [r["audio"]["bytes"] for r in rows_l] == [r["audio"]["bytes"] for r in rows_r]


@pytest.mark.parametrize("codec", ["mp3", "opus"])
def test_compressed_audio_inside_a_table_replays_exactly(demo_corpus, tmp_path, codec):
    """MP3 / Opus bytes in table rows are decoded whole once (their seeks are not
    sample-exact), so same seed same bytes and replay hold for them too."""
    rows = _speech_rows(demo_corpus, 8)
    for r in rows:
        x, rate = sf.read(io.BytesIO(r["audio"]["bytes"]), dtype="float32")
        buf = io.BytesIO()
        sf.write(buf, x, rate, format="MP3" if codec == "mp3" else "OGG",
                 **({} if codec == "mp3" else {"subtype": "OPUS"}))
        r["audio"] = {"bytes": buf.getvalue(), "path": f"u.{codec}"}
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([("audio", AUDIO), ("text", pa.string()),
                                                                ("speaker", pa.string())])), tmp_path / "t.parquet")
    recipe = _recipe(demo_corpus, tmp_path, {"format": "table", "paths": ["t.parquet"]})
    assert len(index_pools(recipe).pools["speech"]) == 8
    ctx = check_context(recipe, tmp_path / "chk", samples=4)
    for check in CHECKS:
        check(ctx)
