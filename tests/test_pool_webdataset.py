"""``format: webdataset`` pools (issue 12): WebDataset tar shards, members grouped by key
as ``webdataset`` groups them, the media member read by offset, ``.json`` / ``.txt`` /
``.cls`` members as labels; every kind of bad tar or sample ends in a reject with its
reason or a clear error."""

from __future__ import annotations

import builtins
import csv
import gzip
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine import webdataset_tars
from engine.errors import InputError, RecipeError
from engine.formats import list_items
from engine.webdataset_tars import wds_key
from engine.pools import index_pools
from engine.recipe import parse_recipe
from engine.sources import decode, open_media
from engine.synth_checks import CHECKS, check_context

from .conftest import small_recipe


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _utterances(corpus: Path, n: int = 24) -> list[dict]:
    return list(csv.DictReader(open(corpus / "speech" / "manifest.csv")))[:n]


def _write_shards(corpus: Path, root: Path, rows: list[dict], per_shard: int = 12) -> None:
    """WebDataset's layout: per utterance ``<speaker>/<utt>.flac`` then its .json, .txt
    and .cls members, adjacent; keys keep their folder."""
    (root / "shards").mkdir(parents=True, exist_ok=True)
    for s in range(0, len(rows), per_shard):
        with tarfile.open(root / "shards" / f"train-{s // per_shard:05d}.tar", "w") as tar:
            for i, r in enumerate(rows[s:s + per_shard], start=s):
                key = r["path"].rsplit(".", 1)[0]
                _add(tar, f"{key}.flac", (corpus / "speech" / r["path"]).read_bytes())
                _add(tar, f"{key}.json", json.dumps({"speaker": r["speaker"], "take": {"index": i, "tags": ["a"]},
                                                     "note": None}).encode())
                _add(tar, f"{key}.txt", (r["text"] + "\n").encode())
                _add(tar, f"{key}.cls", str(i % 3).encode())


def _recipe(corpus: Path, base: Path, speech_pool: dict):
    data = small_recipe(corpus)
    data["pools"]["speech"] = speech_pool
    data["splits"] = {"train": {"samples": 12}}
    data["output"]["samples_per_shard"] = 6
    return parse_recipe(data, base_dir=base)


WDS = {"format": "webdataset", "paths": ["shards/train-*.tar"]}


@pytest.fixture(scope="module")
def wds(demo_corpus, tmp_path_factory):
    """24 utterances in two WebDataset shards of 12 samples."""
    root = tmp_path_factory.mktemp("wds")
    _write_shards(demo_corpus, root, _utterances(demo_corpus))
    return root


def test_keys_are_webdatasets_base_plus_ext():
    """The key is the name up to the first dot of the file name, folders included; the
    extension is the rest, lowercased (webdataset.tariterators.base_plus_ext)."""
    assert wds_key("utt7.flac") == ("utt7", "flac")
    assert wds_key("spk1/utt7.seg.FLAC") == ("spk1/utt7", "seg.flac")
    assert wds_key("v1.2/utt7.json") == ("v1.2/utt7", "json")
    assert wds_key("./utt7.wav") == ("./utt7", "wav")
    assert wds_key("README") is None and wds_key("v1.2/README") is None
    assert wds_key("spk1/.hidden") == ("spk1/", "hidden")  # as webdataset's regular expression has it


def test_a_webdataset_pool_has_one_item_per_key_with_its_labels(wds, demo_corpus):
    pool = index_pools(_recipe(demo_corpus, wds, WDS)).pools["speech"]
    rows = _utterances(demo_corpus)
    assert len(pool) == 24
    assert pool.items[0] == f"shards/train-00000.tar#{rows[0]['path'].rsplit('.', 1)[0]}"
    assert pool.items[-1] == f"shards/train-00001.tar#{rows[-1]['path'].rsplit('.', 1)[0]}"
    # nested .json keys joined with '.', lists and nulls left out; .txt is `text`, .cls is `label`
    assert pool.labels[5] == {"speaker": rows[5]["speaker"], "take.index": 5, "text": rows[5]["text"], "label": 2}
    assert [f.name for f in pool.label_schema] == ["speaker", "take.index", "text", "label"]
    info = sf.info(str(demo_corpus / "speech" / rows[5]["path"]))
    assert pool.duration_s[5] == pytest.approx(info.frames / info.samplerate)


def test_a_member_read_returns_exactly_the_members_bytes(wds, demo_corpus):
    listing = list_items("speech", _recipe(demo_corpus, wds, WDS).pools["speech"], wds)
    assert len(listing.locators) == 24
    for item, text in zip(listing.ids, listing.locators):
        loc = decode(text)
        assert loc.kind == "tar" and Path(loc.src).name == Path(item.split("#")[0]).name
        raw, segment = open_media(text)
        with tarfile.open(loc.src) as tar:
            assert raw.read() == tar.extractfile(loc.name).read() and segment is None
            assert loc.name == item.split("#", 1)[1] + ".flac"


def test_listing_reads_headers_and_labels_not_media(wds, demo_corpus, monkeypatch):
    """Only tar headers and the small label members are read while listing."""
    read = [0]
    real_open = builtins.open

    class Counting(io.BufferedReader):
        def read(self, n=-1):
            data = super().read(n)
            read[0] += len(data)
            return data

    def counting_open(path, mode="r", *args, **kwargs):
        if mode != "rb":
            return real_open(path, mode, *args, **kwargs)
        return Counting(real_open(path, "rb", buffering=0))

    monkeypatch.setattr(webdataset_tars, "open", counting_open, raising=False)
    listing = list_items("speech", _recipe(demo_corpus, wds, WDS).pools["speech"], wds)
    media = sum(decode(x).size for x in listing.locators)
    assert len(listing.ids) == 24 and 0 < read[0] < media / 4


def test_rows_carry_the_labels_of_the_item_their_sources_name(wds, demo_corpus, tmp_path):
    """The speech in a row is the audio of the key its sources name, and the row carries
    that key's transcript, speaker and class."""
    from engine.plan import make_plan
    from engine.shards import read_shard
    from engine.synth import build_synthesizer
    from engine.worker import make_shard

    recipe = _recipe(demo_corpus, wds, WDS)
    index = index_pools(recipe)
    make_shard(recipe, index, make_plan(recipe).shards[0], tmp_path)
    rows = read_shard(next(tmp_path.rglob("*.arrow"))).to_pylist()
    by_key = {r["path"].rsplit(".", 1)[0]: (i, r) for i, r in enumerate(_utterances(demo_corpus))}
    synth = build_synthesizer(recipe, index)
    assert len(rows) == 6
    for row in rows:
        shard, key = row["sources"][0]["item"].split("#")
        i, source = by_key[key]
        assert shard == f"shards/train-{i // 12:05d}.tar"
        assert (row["text"], row["speaker"], row["label"], row["take.index"]) == (
            source["text"], source["speaker"], i % 3, i)
        parts = synth.render(json.loads(row["params"]))
        clean, _ = sf.read(demo_corpus / "speech" / source["path"], dtype="float32")
        gain = float(np.dot(parts.speech, clean) / np.dot(clean, clean))
        assert np.allclose(parts.speech, gain * clean, atol=1e-4)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_a_webdataset_pool_keeps_the_synthesizer_contract(wds, demo_corpus, tmp_path, check):
    check(check_context(_recipe(demo_corpus, wds, WDS), tmp_path, samples=6))


def test_an_image_webdataset_pool_keeps_the_synthesizer_contract(demo_corpus, tmp_path):
    labels = {r["path"]: r["label"] for r in csv.DictReader(open(demo_corpus / "images" / "manifest.csv"))}
    photos = sorted((demo_corpus / "images" / "photos").glob("*.png"))[:6]
    with tarfile.open(tmp_path / "photos-000.tar", "w") as tar:
        for p in photos:
            _add(tar, f"photos/{p.stem}.png", p.read_bytes())
            _add(tar, f"photos/{p.stem}.json", json.dumps({"label": labels[f"photos/{p.name}"]}).encode())
    data = {"name": "img", "seed": 1,
            "pools": {"photos": {"kind": "image", "format": "webdataset", "paths": ["photos-*.tar"]}},
            "splits": {"train": {"samples": 6}}, "output": {"samples_per_shard": 6},
            "synth": {"type": "image_augment", "images": "photos", "transforms": [{"HorizontalFlip": {"p": 0.5}}]}}
    recipe = parse_recipe(data, base_dir=tmp_path)
    pool = index_pools(recipe).pools["photos"]
    assert pool.items[0] == f"photos-000.tar#photos/{photos[0].stem}"
    assert len(pool) == 6 and pool.width.min() > 0 and pool.labels[0] == {"label": labels[f"photos/{photos[0].name}"]}
    for check in CHECKS:
        check(check_context(recipe, tmp_path / "chk", samples=4))


def _bad_shards(corpus: Path, root: Path) -> None:
    rows = _utterances(corpus, 4)
    flac = [(corpus / "speech" / r["path"]).read_bytes() for r in rows]
    wav = io.BytesIO()
    sf.write(wav, (0.1 * np.sin(np.arange(1600) * 0.3)).astype(np.float32), 16000, format="WAV")
    (root / "shards").mkdir()
    with tarfile.open(root / "shards" / "mixed.tar", "w") as tar:
        _add(tar, "ok.flac", flac[0])
        _add(tar, "ok.txt", b"fine")
        _add(tar, "nomedia.json", b'{"speaker": "x"}')
        _add(tar, "two.flac", flac[1])
        _add(tar, "two.wav", wav.getvalue())
        _add(tar, "badjson.flac", flac[2])
        _add(tar, "badjson.json", b'{"speaker": ')
        _add(tar, "notobject.flac", flac[2])
        _add(tar, "notobject.json", b'["a"]')
        _add(tar, "badcls.flac", flac[2])
        _add(tar, "badcls.cls", b"dog")
        _add(tar, "corrupt.flac", b"fLaC this is not really a FLAC stream" * 20)
        _add(tar, "empty.flac", b"")
        _add(tar, "split.flac", flac[3])
        _add(tar, "other.flac", flac[3])
        _add(tar, "split.txt", b"members of one key apart")
        _add(tar, "twice.flac", flac[3])
        _add(tar, "twice.flac", flac[3])
        _add(tar, "__meta__", b"skipped, as webdataset skips it")
    with tarfile.open(root / "shards" / "truncated.tar", "w") as tar:
        _add(tar, "k1.flac", flac[0])
        _add(tar, "k2.flac", flac[1])
    with tarfile.open(root / "shards" / "truncated.tar") as tar:
        k2 = tar.getmember("k2.flac")
    whole = (root / "shards" / "truncated.tar").read_bytes()
    (root / "shards" / "truncated.tar").write_bytes(whole[:k2.offset_data + k2.size // 2])  # cut inside k2.flac
    with tarfile.open(root / "shards" / "header.tar", "w") as tar:
        _add(tar, "h1.flac", flac[0])
        _add(tar, "h1.txt", b"kept")
        _add(tar, "h2.flac", flac[1])
        _add(tar, "h2.txt", b"lost")
    data = bytearray((root / "shards" / "header.tar").read_bytes())
    h2 = data.index(b"h2.flac")
    data[h2 + 148:h2 + 156] = b"garbage!"  # the checksum field of h2.flac's header
    (root / "shards" / "header.tar").write_bytes(bytes(data))
    with tarfile.open(root / "shards" / "empty.tar", "w"):
        pass
    (root / "shards" / "zero.tar").write_bytes(b"")
    (root / "shards" / "text.tar").write_bytes(b"this is a text file, not a tar\n" * 40)
    with tarfile.open(root / "shards" / "noname.tar", "w") as tar:
        _add(tar, "README", b"no extension, no key")


def test_bad_tars_and_samples_are_rejected_with_reasons(demo_corpus, tmp_path):
    _bad_shards(demo_corpus, tmp_path)
    index = index_pools(_recipe(demo_corpus, tmp_path, {"format": "webdataset", "paths": ["shards/*.tar"]}))
    reasons = {r["path"]: r["reason"] for r in index.rejects if r["pool"] == "speech"}
    assert "a missing tar member: no audio member (one of .aif" in reasons["shards/mixed.tar#nomedia"]
    assert "two audio members (two.flac, two.wav)" in reasons["shards/mixed.tar#two"]
    assert "set pools.speech.media_column" in reasons["shards/mixed.tar#two"]
    assert "malformed .json member badjson.json" in reasons["shards/mixed.tar#badjson"]
    assert "holds a list, not an object" in reasons["shards/mixed.tar#notobject"]
    assert "not a class number" in reasons["shards/mixed.tar#badcls"]
    assert "not decodable audio" in reasons["shards/mixed.tar#corrupt"]
    assert "empty (0 bytes)" in reasons["shards/mixed.tar#empty"]
    assert "not adjacent in the tar" in reasons["shards/mixed.tar#split"]
    assert "twice.flac appears twice" in reasons["shards/mixed.tar#twice"]
    assert "cut short: member k2.flac needs bytes" in reasons["shards/truncated.tar#k2"]
    assert "a corrupt header at byte" in reasons["shards/header.tar"]
    assert "may be cut off" in reasons["shards/header.tar#h1"]
    assert reasons["shards/empty.tar"] == "empty tar: no members"
    assert reasons["shards/zero.tar"] == "empty file (0 bytes), not a tar"
    assert "not a tar file" in reasons["shards/text.tar"]
    assert "no WebDataset samples" in reasons["shards/noname.tar"]
    pool = index.pools["speech"]
    assert pool.items == ["shards/mixed.tar#ok", "shards/mixed.tar#other", "shards/truncated.tar#k1"]
    assert pool.labels == [{"text": "fine"}, {"text": None}, {"text": None}]
    assert len(reasons) == 16


def test_media_column_names_the_member_to_take(demo_corpus, tmp_path):
    _bad_shards(demo_corpus, tmp_path)
    pool = index_pools(_recipe(demo_corpus, tmp_path, {"format": "webdataset", "paths": ["shards/mixed.tar"],
                                                       "media_column": "wav", "min_duration_s": 0})).pools["speech"]
    assert pool.items == ["shards/mixed.tar#two"] and pool.duration_s[0] == pytest.approx(0.1)
    listing = list_items("speech", _recipe(demo_corpus, tmp_path, {
        "format": "webdataset", "paths": ["shards/mixed.tar"], "media_column": "wav"}).pools["speech"], tmp_path)
    assert decode(listing.locators[0]).name == "two.wav"


def test_label_columns_choose_the_labels(wds, demo_corpus):
    pool = index_pools(_recipe(demo_corpus, wds, {**WDS, "label_columns": ["text"]})).pools["speech"]
    assert pool.labels[0] == {"text": _utterances(demo_corpus, 1)[0]["text"]}
    with pytest.raises(InputError, match=r"label_columns names \['gender'\], which no item has"):
        index_pools(_recipe(demo_corpus, wds, {**WDS, "label_columns": ["gender"]}))


def test_a_compressed_tar_is_refused_with_the_fix(wds, demo_corpus, tmp_path):
    (tmp_path / "train-00000.tar.gz").write_bytes(gzip.compress((wds / "shards" / "train-00000.tar").read_bytes()))
    with pytest.raises(InputError, match=r"train-00000\.tar\.gz: a gzip-compressed tar.*Re-pack it uncompressed"):
        index_pools(_recipe(demo_corpus, tmp_path, {"format": "webdataset", "paths": ["*.tar.gz"]}))


def test_a_webdataset_pool_takes_no_key_column(demo_corpus):
    data = small_recipe(demo_corpus)
    data["pools"]["speech"] = {**WDS, "key_column": "id"}
    with pytest.raises(RecipeError, match="key_column goes with format: table"):
        parse_recipe(data)


def test_the_webdataset_template_runs_on_the_layout_it_describes(demo_corpus, tmp_path):
    """recipes/template_webdataset.yaml, copied beside shards and noise laid out as its
    comments say, indexes and makes a shard (only the sizes are overridden)."""
    from engine.plan import make_plan
    from engine.recipe import load_recipe
    from engine.worker import make_shard

    template = Path(__file__).parent.parent / "recipes" / "template_webdataset.yaml"
    shutil.copy(template, tmp_path / "recipe.yaml")
    _write_shards(demo_corpus, tmp_path, _utterances(demo_corpus, 12))
    (tmp_path / "corpora" / "noise" / "car").mkdir(parents=True)
    for p in sorted((demo_corpus / "noise" / "car").glob("*.wav")):
        x, rate = sf.read(p, dtype="float32")
        sf.write(tmp_path / "corpora" / "noise" / "car" / f"{p.stem}.flac", x, rate, format="FLAC")
    recipe = load_recipe(tmp_path / "recipe.yaml", [
        "pools.speech.min_duration_s=0", "splits.train.samples=4", "splits.train_dev.samples=2",
        "splits.train_dev_unseen.samples=2", "output.samples_per_shard=4"])
    index = index_pools(recipe)
    assert len(index.pools["speech"]) == 12 and not [r for r in index.rejects if r["pool"] == "speech"]
    assert index.pools["speech"].items[0].startswith("shards/train-00000.tar#")
    assert make_shard(recipe, index, make_plan(recipe).shards[0], tmp_path / "out")["rows"] == 4


@pytest.fixture(scope="module")
def wds_on_s3(wds):
    """The same shards in a bucket of a real S3-compatible server (moto on 127.0.0.1)."""
    from .conftest import tree_on_s3

    with tree_on_s3(wds, "corpus", "wds") as uri:
        yield uri


def test_shards_on_an_object_store_give_the_same_items_labels_and_bytes(wds_on_s3, wds, demo_corpus, tmp_path):
    from engine.plan import make_plan
    from engine.shards import read_shard
    from engine.worker import make_shard

    local = _recipe(demo_corpus, wds, WDS)
    remote = _recipe(demo_corpus, wds, {"format": "webdataset", "paths": [f"{wds_on_s3}/shards/train-*.tar"]})
    folder = _recipe(demo_corpus, wds, {"format": "webdataset", "paths": [f"{wds_on_s3}/shards"]})
    pl, pr, pf = (index_pools(r).pools["speech"] for r in (local, remote, folder))
    assert pr.items == [f"{wds_on_s3}/{i}" for i in pl.items] and pf.items == pr.items
    one = _recipe(demo_corpus, wds, {"format": "webdataset", "paths": [f"{wds_on_s3}/shards/train-00001.tar"]})
    assert index_pools(one).pools["speech"].items == pr.items[12:]
    assert pr.labels == pl.labels and list(pr.duration_s) == list(pl.duration_s)
    spec = make_plan(local).shards[0]
    make_shard(local, index_pools(local), spec, tmp_path / "l")
    make_shard(remote, index_pools(remote), spec, tmp_path / "r")
    rows_l = read_shard(next((tmp_path / "l").rglob("*.arrow"))).to_pylist()
    rows_r = read_shard(next((tmp_path / "r").rglob("*.arrow"))).to_pylist()
    assert [r["audio"]["bytes"] for r in rows_l] == [r["audio"]["bytes"] for r in rows_r]
    assert [r["text"] for r in rows_l] == [r["text"] for r in rows_r]


def test_bad_tars_on_an_object_store_are_rejected_as_locally(demo_corpus, tmp_path):
    from .conftest import tree_on_s3

    _bad_shards(demo_corpus, tmp_path)
    local = index_pools(_recipe(demo_corpus, tmp_path, {"format": "webdataset", "paths": ["shards/*.tar"]}))
    with tree_on_s3(tmp_path / "shards", "bad", "x") as uri:
        remote = index_pools(_recipe(demo_corpus, tmp_path, {"format": "webdataset", "paths": [f"{uri}/*.tar"]}))
        with pytest.raises(InputError, match="matches no objects"):
            index_pools(_recipe(demo_corpus, tmp_path, {"format": "webdataset", "paths": [f"{uri}/none-*.tar"]}))
    reasons_l = {r["path"].removeprefix("shards/"): r["reason"] for r in local.rejects if r["pool"] == "speech"}
    reasons_r = {r["path"].removeprefix(f"{uri}/"): r["reason"] for r in remote.rejects if r["pool"] == "speech"}
    assert reasons_r.keys() == reasons_l.keys() and len(reasons_r) == 16, str(reasons_r)
    for k, why in reasons_l.items():
        assert why.replace("shards/", "") == reasons_r[k].replace(f"{uri}/", ""), k
    assert remote.pools["speech"].items == [f"{uri}/{i.removeprefix('shards/')}" for i in local.pools["speech"].items]
