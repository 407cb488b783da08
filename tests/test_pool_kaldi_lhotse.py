"""Pools read where corpora live (issue 12): ``format: kaldi`` (Kaldi / ESPnet data dirs)
and ``format: lhotse`` (cuts, or recordings and supervisions, as JSONL). Items are
segments of longer recordings read by seeking; labels follow their item; what
shardsmith cannot read safely (piped commands, command sources) is refused with a
reason and never run.

The test corpus is made of the demo corpus: its utterances concatenated into longer
recordings, described by a Kaldi data dir and by Lhotse manifests of exactly the shape
Lhotse writes (``to_dict`` of ``Recording``, ``SupervisionSegment`` and ``MonoCut``)."""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.audio import io as audio_io
from engine.errors import InputError, RecipeError
from engine.plan import make_plan
from engine.pools import index_pools
from engine.recipe import load_recipe, parse_recipe, recipe_hash
from engine.shards import read_shard
from engine.synth import build_synthesizer
from engine.synth_checks import CHECKS, check_context
from engine.worker import make_shard

from .conftest import small_recipe

RATE = 16000
GAP_FRAMES = RATE // 4  # silence between the utterances of a recording
GENDER = {"v1": "f", "v2": "m", "v3": "f", "v4": "m", "v5": "f", "v6": "m"}


@dataclass(frozen=True)
class Utt:
    id: str
    recording: str
    start_frame: int
    end_frame: int
    text: str
    speaker: str

    @property
    def start_s(self) -> float:
        return self.start_frame / RATE

    @property
    def duration_s(self) -> float:
        return (self.end_frame - self.start_frame) / RATE


@dataclass
class Corpus:
    root: Path
    utts: list[Utt]
    recordings: dict[str, Path]  # recording id -> its file


def _recording(rec_id: str, source: str, frames: int, channels: tuple[int, ...] = (0,)) -> dict:
    """A Lhotse ``Recording.to_dict()``."""
    return {"id": rec_id, "sources": [{"type": "file", "channels": list(channels), "source": source}],
            "sampling_rate": RATE, "num_samples": frames, "duration": frames / RATE, "channel_ids": list(channels)}


def _supervision(u: Utt, start_s: float | None = None, channel=0) -> dict:
    """A Lhotse ``SupervisionSegment.to_dict()``."""
    return {"id": u.id, "recording_id": u.recording, "start": u.start_s if start_s is None else start_s,
            "duration": u.duration_s, "channel": channel, "text": u.text, "language": "English",
            "speaker": u.speaker, "gender": GENDER[u.speaker]}


def _write_jsonl(path: Path, records: list, gz: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:  # as Lhotse's open_best writes .jsonl.gz
            f.write(text)
    else:
        path.write_text(text)


@pytest.fixture(scope="module")
def corpus(demo_corpus, tmp_path_factory) -> Corpus:
    """12 demo utterances in 4 recordings of 3 (with silence between), as a Kaldi data dir
    (data/train, relative wav.scp paths) and as Lhotse manifests (manifests/, sources
    relative to the manifests' folder)."""
    root = tmp_path_factory.mktemp("corpora")
    rows = list(csv.DictReader(open(demo_corpus / "speech" / "manifest.csv")))[::10][:12]
    utts: list[Utt] = []
    recordings: dict[str, Path] = {}
    (root / "wavs").mkdir()
    for k in range(4):
        rec = f"rec{k}"
        parts, pos = [], 0
        for j, r in enumerate(rows[3 * k: 3 * k + 3]):
            x, rate = sf.read(demo_corpus / "speech" / r["path"], dtype="float32")
            assert rate == RATE and x.ndim == 1
            utts.append(Utt(f"{r['speaker']}-{rec}-{j}", rec, pos, pos + len(x), f"{r['text']} ({rec}/{j})",
                            r["speaker"]))
            parts += [x, np.zeros(GAP_FRAMES, np.float32)]
            pos += len(x) + GAP_FRAMES
        recordings[rec] = root / "wavs" / f"{rec}.flac"
        sf.write(recordings[rec], np.concatenate(parts), RATE, subtype="PCM_16")

    data = root / "data" / "train"
    data.mkdir(parents=True)
    (data / "wav.scp").write_text("".join(f"{rec} wavs/{rec}.flac\n" for rec in recordings))
    (data / "segments").write_text("".join(f"{u.id} {u.recording} {u.start_s!r} {u.end_frame / RATE!r}\n"
                                           for u in utts))
    (data / "text").write_text("".join(f"{u.id} {u.text}\n" for u in utts))
    (data / "utt2spk").write_text("".join(f"{u.id} {u.speaker}\n" for u in utts))
    (data / "spk2gender").write_text("".join(f"{s} {GENDER[s]}\n" for s in sorted({u.speaker for u in utts})))

    frames = {rec: sf.info(str(p)).frames for rec, p in recordings.items()}
    rec_dicts = {rec: _recording(rec, f"../wavs/{rec}.flac", frames[rec]) for rec in recordings}
    _write_jsonl(root / "manifests" / "recordings.jsonl.gz", list(rec_dicts.values()))
    _write_jsonl(root / "manifests" / "supervisions.jsonl.gz", [_supervision(u) for u in utts])
    cuts = [{"id": f"cut-{u.id}", "start": u.start_s, "duration": u.duration_s, "channel": 0,
             "supervisions": [_supervision(u, start_s=0.0)], "recording": rec_dicts[u.recording], "type": "MonoCut"}
            for u in utts]
    _write_jsonl(root / "manifests" / "cuts.jsonl.gz", cuts)
    return Corpus(root, utts, recordings)


POOLS = {
    "kaldi": ({"format": "kaldi", "paths": ["data/train"]}, lambda u: f"data/train#{u.id}"),
    "lhotse_cuts": ({"format": "lhotse", "paths": ["manifests/cuts.jsonl.gz"]},
                    lambda u: f"manifests/cuts.jsonl.gz#cut-{u.id}"),
    "lhotse_rs": ({"format": "lhotse", "paths": ["manifests/recordings.jsonl.gz", "manifests/supervisions.jsonl.gz"]},
                  lambda u: f"manifests/supervisions.jsonl.gz#{u.id}"),
}


def _recipe(demo_corpus: Path, base: Path, speech_pool: dict, samples: int = 12):
    data = small_recipe(demo_corpus)
    data["pools"]["speech"] = speech_pool
    data["splits"] = {"train": {"samples": samples}}
    data["output"]["samples_per_shard"] = 6
    return parse_recipe(data, base_dir=base)


@pytest.fixture(scope="module")
def shards(corpus, demo_corpus, tmp_path_factory):
    """One shard made (without Ray) from each kind of pool: name -> (recipe, index, rows)."""
    made = {}

    def make(name: str):
        if name not in made:
            recipe = _recipe(demo_corpus, corpus.root, POOLS[name][0])
            index = index_pools(recipe)
            out = tmp_path_factory.mktemp(name)
            make_shard(recipe, index, make_plan(recipe).shards[0], out)
            made[name] = (recipe, index, read_shard(next(out.rglob("*.arrow"))).to_pylist())
        return made[name]

    return make


@pytest.mark.parametrize("name", POOLS)
def test_the_items_are_the_segments_with_their_labels(corpus, demo_corpus, name):
    spec, item_of = POOLS[name]
    pool = index_pools(_recipe(demo_corpus, corpus.root, spec)).pools["speech"]
    assert pool.items == [item_of(u) for u in corpus.utts]
    assert pool.duration_s == pytest.approx([u.duration_s for u in corpus.utts], abs=1 / RATE)
    assert (pool.channels == 1).all()
    expected = [{"text": u.text, "speaker": u.speaker, "gender": GENDER[u.speaker]} for u in corpus.utts]
    if name != "kaldi":
        expected = [{**e, "language": "English"} for e in expected]
    assert pool.labels == expected


@pytest.mark.parametrize("name", POOLS)
def test_each_row_carries_the_transcript_of_the_item_it_is_made_of(shards, corpus, name):
    _, item_of = POOLS[name]
    _, _, rows = shards(name)
    by_item = {item_of(u): u for u in corpus.utts}
    assert len(rows) == 6 and len({r["sources"][0]["item"] for r in rows}) > 1
    for row in rows:
        u = by_item[row["sources"][0]["item"]]
        assert (row["text"], row["speaker"], row["gender"]) == (u.text, u.speaker, GENDER[u.speaker])


@pytest.mark.parametrize("name", POOLS)
def test_the_speech_of_a_row_is_its_segment_of_the_recording(shards, corpus, name):
    """The speech in a row is exactly the recording's samples between the segment's start
    and end: same length, and the slice up to the level gain (no reverb here)."""
    _, item_of = POOLS[name]
    recipe, index, rows = shards(name)
    by_item = {item_of(u): u for u in corpus.utts}
    synth = build_synthesizer(recipe, index)
    try:
        for row in rows:
            u = by_item[row["sources"][0]["item"]]
            whole, _ = sf.read(corpus.recordings[u.recording], dtype="float32")
            clean = whole[u.start_frame:u.end_frame]
            speech = synth.render(json.loads(row["params"])).speech
            assert speech.shape == clean.shape
            gain = float(np.dot(speech, clean) / np.dot(clean, clean))
            assert np.allclose(speech, gain * clean, atol=1e-4)
            assert gain > 0 and np.corrcoef(speech, clean)[0, 1] > 0.9999
    finally:
        synth.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", ["kaldi", "lhotse_cuts"])
def test_kaldi_and_lhotse_pools_keep_the_synthesizer_contract(corpus, demo_corpus, tmp_path, check, name):
    check(check_context(_recipe(demo_corpus, corpus.root, POOLS[name][0]), tmp_path, samples=6))


def test_a_data_dir_without_segments_lists_its_recordings(corpus, demo_corpus):
    whole = corpus.root / "data" / "whole"
    whole.mkdir(exist_ok=True)
    (whole / "wav.scp").write_text("".join(f"{rec} {path}\n" for rec, path in corpus.recordings.items()))
    (whole / "text").write_text("rec1 the second recording\n")
    pool = index_pools(_recipe(demo_corpus, corpus.root, {"format": "kaldi", "paths": ["data/whole"]})).pools["speech"]
    assert pool.items == [f"data/whole#{rec}" for rec in corpus.recordings]
    assert pool.frames.tolist() == [sf.info(str(p)).frames for p in corpus.recordings.values()]
    assert [r["text"] for r in pool.labels] == [None, "the second recording", None, None]


def test_a_lhotse_pool_of_recordings_alone_lists_the_recordings(corpus, demo_corpus):
    spec = {"format": "lhotse", "paths": ["manifests/recordings.jsonl.gz"]}
    pool = index_pools(_recipe(demo_corpus, corpus.root, spec)).pools["speech"]
    assert pool.items == [f"manifests/recordings.jsonl.gz#{rec}" for rec in corpus.recordings]
    assert pool.paths == [str(p) for p in corpus.recordings.values()]


def test_supervisions_on_channel_1_of_a_multichannel_recording_read_channel_1(corpus, demo_corpus, tmp_path):
    """One 2-channel file (channel given as 1 and as Lhotse's list form [1]), and a
    recording that keeps each channel in a file of its own (as AMI's do)."""
    a, b = corpus.utts[0], corpus.utts[4]
    n = min(a.end_frame - a.start_frame, b.end_frame - b.start_frame)
    ch0 = sf.read(corpus.recordings[a.recording], dtype="float32")[0][a.start_frame:a.start_frame + n]
    ch1 = sf.read(corpus.recordings[b.recording], dtype="float32")[0][b.start_frame:b.start_frame + n]
    sf.write(tmp_path / "stereo.flac", np.stack([ch0, ch1], axis=1), RATE, subtype="PCM_16")
    sf.write(tmp_path / "left.flac", ch0, RATE, subtype="PCM_16")
    sf.write(tmp_path / "right.flac", ch1, RATE, subtype="PCM_16")
    stereo = _recording("stereo", "stereo.flac", n, channels=(0, 1))
    split = _recording("split", "left.flac", n)
    split["sources"].append({"type": "file", "channels": [1], "source": "right.flac"})
    split["channel_ids"] = [0, 1]
    _write_jsonl(tmp_path / "recordings.jsonl.gz", [stereo, split])
    start, dur = 0.5, 1.0
    sups = [{"id": sid, "recording_id": rec, "start": start, "duration": dur, "channel": channel,
             "text": sid, "speaker": "x"}
            for sid, rec, channel in [("st-1", "stereo", 1), ("st-list", "stereo", [1]), ("st-0", "stereo", 0),
                                      ("sp-1", "split", 1)]]
    _write_jsonl(tmp_path / "supervisions.jsonl.gz", sups)
    spec = {"format": "lhotse", "paths": ["recordings.jsonl.gz", "supervisions.jsonl.gz"]}
    pool = index_pools(_recipe(demo_corpus, tmp_path, spec)).pools["speech"]
    assert [i.split("#")[1] for i in pool.items] == ["st-1", "st-list", "st-0", "sp-1"]
    assert (pool.channels == 1).all()
    lo, hi = int(start * RATE), int((start + dur) * RATE)
    stored = sf.read(tmp_path / "stereo.flac", dtype="float32")[0]
    for i, expected in enumerate([stored[lo:hi, 1], stored[lo:hi, 1], stored[lo:hi, 0], stored[lo:hi, 1]]):
        got = audio_io.read_mono(pool.paths[i], 0, int(pool.frames[i]))
        assert np.array_equal(got, expected), pool.items[i]


def test_bad_kaldi_entries_are_refused_with_reasons_and_never_run(corpus, demo_corpus, tmp_path):
    marker = tmp_path / "the-command-ran"
    (tmp_path / "wavs").mkdir()
    (tmp_path / "wavs" / "r.flac").write_bytes(corpus.recordings["rec0"].read_bytes())
    total_s = sf.info(str(corpus.recordings["rec0"])).duration
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    (data / "wav.scp").write_text(
        "r_ok wavs/r.flac\n"
        f"r_pipe touch {marker} && sox wavs/r.flac -t wav - |\n"
        f"r_shell wavs/r.flac; touch {marker}\n"
        "r_missing wavs/nowhere.flac\n"
        "r_ark data/wav.ark:1234\n")
    (data / "segments").write_text(
        "u_ok r_ok 0.0 1.0\n"
        f"u_past r_ok 1.0 {total_s + 5:.2f}\n"
        f"u_over r_ok {total_s - 1:.3f} {total_s + 0.3:.3f}\n"
        "u_pipe r_pipe 0.0 1.0\n"
        "u_unknown r_nowhere 0.0 1.0\n"
        "u_backwards r_ok 2.0 1.0\n"
        "u_short r_ok 2.0\n")
    index = index_pools(_recipe(demo_corpus, tmp_path, {"format": "kaldi", "paths": ["data/train"]}))
    reasons = {r["path"]: r["reason"] for r in index.rejects}
    assert index.pools["speech"].items == ["data/train#u_ok", "data/train#u_over"]
    # a segment up to 0.5 s past its recording (Kaldi's --max-overshoot) is cut at the end
    assert index.pools["speech"].duration_s[1] == pytest.approx(1.0, abs=1e-3)
    assert not marker.exists()
    assert reasons["data/train/wav.scp#r_pipe"].startswith("a piped command ('touch ")
    assert "shardsmith never runs a shell: convert the audio to files first" in reasons["data/train/wav.scp#r_pipe"]
    assert reasons["data/train/wav.scp#r_shell"].startswith("shell syntax")
    assert reasons["data/train/wav.scp#r_missing"].startswith(f"file not found: {tmp_path / 'wavs' / 'nowhere.flac'}")
    assert "offset into a Kaldi archive" in reasons["data/train/wav.scp#r_ark"]
    assert "past the end of its" in reasons["data/train#u_past"]
    assert reasons["data/train#u_pipe"] == "its recording 'r_pipe' is not usable (see data/train/wav.scp#r_pipe)"
    assert reasons["data/train#u_unknown"] == "its recording 'r_nowhere' is not in data/train/wav.scp"
    assert "the end after it" in reasons["data/train#u_backwards"]
    assert "expected '<utt-id> <recording-id> <start> <end>'" in reasons["data/train/segments#line=7"]
    assert len(index.rejects) == 9


def test_a_data_dir_without_wav_scp_names_the_folder_and_the_fix(corpus, demo_corpus, tmp_path):
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "train" / "text").write_text("u1 hello\n")
    with pytest.raises(InputError, match=r"data/train is a folder without wav\.scp; a Kaldi data dir holds wav\.scp"):
        index_pools(_recipe(demo_corpus, tmp_path, {"format": "kaldi", "paths": ["data/train"]}))
    with pytest.raises(InputError, match=r"pools\.speech\.paths\[0\]: 'data/dev' matches no folder"):
        index_pools(_recipe(demo_corpus, tmp_path, {"format": "kaldi", "paths": ["data/dev"]}))


def test_bad_lhotse_records_are_refused_with_reasons_and_never_run(corpus, demo_corpus, tmp_path):
    marker = tmp_path / "the-command-ran"
    (tmp_path / "m").mkdir()
    (tmp_path / "r.flac").write_bytes(corpus.recordings["rec0"].read_bytes())
    frames = sf.info(str(tmp_path / "r.flac")).frames
    ok = _recording("rec_ok", "../r.flac", frames)
    command = {**_recording("rec_cmd", "", frames),
               "sources": [{"type": "command", "channels": [0], "source": f"touch {marker}; sox ../r.flac -t wav -"}]}
    url = {**_recording("rec_url", "", frames),
           "sources": [{"type": "url", "channels": [0], "source": "https://example.org/r.flac"}]}
    speed = {**_recording("rec_speed", "../r.flac", frames),
             "transforms": [{"name": "Speed", "kwargs": {"factor": 1.1}}]}
    lines = [json.dumps(r) for r in (ok, command, url)] + ['{"id": "rec_broken", "sources": [}', json.dumps(speed)]
    (tmp_path / "m" / "recordings.jsonl").write_text("\n".join(lines) + "\n")
    sup = {"start": 0.5, "duration": 1.0, "channel": 0, "text": "t"}
    _write_jsonl(tmp_path / "m" / "supervisions.jsonl.gz", [
        {"id": "s_ok", "recording_id": "rec_ok", **sup},
        {"id": "s_cmd", "recording_id": "rec_cmd", **sup},
        {"id": "s_url", "recording_id": "rec_url", **sup},
        {"id": "s_speed", "recording_id": "rec_speed", **sup},
        {"id": "s_orphan", "recording_id": "rec_elsewhere", **sup},
        {"id": "s_past", "recording_id": "rec_ok", **sup, "start": frames / RATE - 0.2},
        {"id": "s_ch2", "recording_id": "rec_ok", **sup, "channel": 2},
        {"id": "s_ok", "recording_id": "rec_ok", **sup},
    ])
    _write_jsonl(tmp_path / "m" / "cuts.jsonl.gz", [
        {"id": "mixed", "tracks": [], "type": "MixedCut"},
        {"id": "nofeat", "start": 0, "duration": 1.0, "channel": 0, "supervisions": [], "type": "MonoCut"},
    ])
    _write_jsonl(tmp_path / "m" / "empty.jsonl.gz", [])
    spec = {"format": "lhotse", "paths": ["m/*.jsonl*"]}
    index = index_pools(_recipe(demo_corpus, tmp_path, spec))
    reasons = {r["path"]: r["reason"] for r in index.rejects}
    assert index.pools["speech"].items == ["m/supervisions.jsonl.gz#s_ok"]
    assert not marker.exists()
    sups = "m/supervisions.jsonl.gz"
    assert reasons[f"{sups}#s_cmd"].startswith("a 'command' source ('touch ")
    assert reasons[f"{sups}#s_cmd"].endswith("shardsmith never runs a shell: convert the audio to files first")
    assert reasons[f"{sups}#s_url"].startswith("a 'url' source ('https://example.org/r.flac')")
    assert "transforms (Speed)" in reasons[f"{sups}#s_speed"]
    assert "its recording 'rec_elsewhere' is in none of the pool's recordings manifests" in reasons[f"{sups}#s_orphan"]
    assert "past the end of its" in reasons[f"{sups}#s_past"]
    assert "channel 2 is in none of the recording's sources" in reasons[f"{sups}#s_ch2"]
    assert "'s_ok' is listed twice (lines 1 and 8)" in reasons[f"{sups}#line=8"]
    assert reasons["m/recordings.jsonl#line=4"].startswith("not JSON (")
    assert reasons["m/cuts.jsonl.gz#mixed"].startswith("a MixedCut")
    assert reasons["m/cuts.jsonl.gz#nofeat"] == "the cut has no recording (features only)"
    assert reasons["m/empty.jsonl.gz"] == "empty manifest (no records)"
    assert len(index.rejects) == 11


def test_a_lhotse_json_list_is_refused_with_the_conversion(corpus, demo_corpus, tmp_path):
    (tmp_path / "cuts.json").write_text(json.dumps([{"id": "c"}], indent=2))
    with pytest.raises(InputError, match=r"cuts\.json: a JSON list; .*`lhotse copy cuts\.json cuts\.jsonl\.gz`"):
        index_pools(_recipe(demo_corpus, tmp_path, {"format": "lhotse", "paths": ["cuts.json"]}))


def test_kaldi_and_lhotse_are_audio_formats_without_table_options(demo_corpus):
    data = small_recipe(demo_corpus)
    data["pools"]["speech"] = {"format": "kaldi", "paths": ["data/train"], "label_columns": ["text"]}
    with pytest.raises(RecipeError, match="media_column, key_column and label_columns go with format: table"):
        parse_recipe(data)
    data["pools"]["photos"] = {"kind": "image", "format": "lhotse", "paths": ["cuts.jsonl.gz"]}
    data["pools"]["speech"] = {"format": "kaldi", "paths": ["data/train"]}
    with pytest.raises(RecipeError, match="format 'lhotse' lists audio recordings; image pools read"):
        parse_recipe(data)


def test_the_format_enters_the_recipe_hash(demo_corpus):
    data = small_recipe(demo_corpus)
    data["pools"]["speech"] = {"format": "kaldi", "paths": ["data/train"]}
    kaldi = recipe_hash(parse_recipe(data))
    data["pools"]["speech"] = {"format": "lhotse", "paths": ["data/train"]}
    assert recipe_hash(parse_recipe(data)) != kaldi


@pytest.mark.parametrize("name", ["template_kaldi.yaml", "template_lhotse.yaml"])
def test_the_shipped_kaldi_and_lhotse_templates_are_valid(name):
    recipe = load_recipe(Path(__file__).parent.parent / "recipes" / name)
    assert {p.format for p in recipe.pools.values() if hasattr(p, "format")} & {"kaldi", "lhotse"}


@pytest.fixture(scope="module")
def corpus_on_s3(corpus):
    """The same corpus (recordings, data dir, manifests) in a bucket of a real
    S3-compatible server (moto on 127.0.0.1)."""
    from .conftest import tree_on_s3

    with tree_on_s3(corpus.root, "corpus", "c") as uri:
        yield uri


def _same_on_the_store(corpus, demo_corpus, tmp_path, local_spec: dict, remote_spec: dict, uri: str):
    """Items (modulo the prefix), labels, durations and a shard's audio bytes agree."""
    local = _recipe(demo_corpus, corpus.root, local_spec)
    remote = _recipe(demo_corpus, corpus.root, remote_spec)
    il, ir = index_pools(local), index_pools(remote)
    pl, pr = il.pools["speech"], ir.pools["speech"]
    assert len(pl) == 12 and pr.items == [f"{uri}/{i}" for i in pl.items]
    assert pr.labels == pl.labels and list(pr.duration_s) == list(pl.duration_s)
    assert not [r for r in ir.rejects if r["pool"] == "speech"]
    spec = make_plan(local).shards[0]
    make_shard(local, il, spec, tmp_path / "l")
    make_shard(remote, ir, spec, tmp_path / "r")
    rows_l = read_shard(next((tmp_path / "l").rglob("*.arrow"))).to_pylist()
    rows_r = read_shard(next((tmp_path / "r").rglob("*.arrow"))).to_pylist()
    assert [r["audio"]["bytes"] for r in rows_l] == [r["audio"]["bytes"] for r in rows_r]
    assert [r["text"] for r in rows_l] == [r["text"] for r in rows_r]


def test_a_data_dir_on_an_object_store_gives_the_same_items_labels_and_bytes(corpus_on_s3, corpus, demo_corpus,
                                                                             tmp_path):
    """wav.scp's relative paths resolve against the folder Kaldi ran in, found on the
    store as the nearest folder above the data dir that holds them."""
    _same_on_the_store(corpus, demo_corpus, tmp_path, POOLS["kaldi"][0],
                       {"format": "kaldi", "paths": [f"{corpus_on_s3}/data/train"]}, corpus_on_s3)
    pool = index_pools(_recipe(demo_corpus, corpus.root, {"format": "kaldi", "paths": [f"{corpus_on_s3}/data/*"]}))
    assert pool.pools["speech"].items[0] == f"{corpus_on_s3}/data/train#{corpus.utts[0].id}"


def test_bad_kaldi_entries_on_an_object_store_are_refused_with_reasons(corpus_on_s3, corpus, demo_corpus):
    import boto3

    s3 = boto3.client("s3")
    s3.put_object(Bucket="corpus", Key="c/data/bad/wav.scp",
                  Body=f"r1 wavs/rec0.flac\nr2 wavs/nope.flac\nr3 sox x.wav -t wav - |\nr4 {corpus_on_s3}/wavs/rec1.flac\n")
    s3.put_object(Bucket="corpus", Key="c/data/bad/text", Body="r1 one\nr4 four\n")
    try:
        index = index_pools(_recipe(demo_corpus, corpus.root, {"format": "kaldi", "paths": [f"{corpus_on_s3}/data/bad"]}))
    finally:
        s3.delete_object(Bucket="corpus", Key="c/data/bad/wav.scp")
        s3.delete_object(Bucket="corpus", Key="c/data/bad/text")
    bad = f"{corpus_on_s3}/data/bad"
    reasons = {r["path"]: r["reason"] for r in index.rejects if r["pool"] == "speech"}
    assert reasons.keys() == {f"{bad}/wav.scp#r2", f"{bad}/wav.scp#r3"}
    assert reasons[f"{bad}/wav.scp#r2"].startswith(f"file not found: {corpus_on_s3}/wavs/nope.flac")
    assert "a piped command" in reasons[f"{bad}/wav.scp#r3"]
    pool = index.pools["speech"]
    assert pool.items == [f"{bad}#r1", f"{bad}#r4"] and [x["text"] for x in pool.labels] == ["one", "four"]
    with pytest.raises(InputError, match="holds no wav.scp"):
        index_pools(_recipe(demo_corpus, corpus.root, {"format": "kaldi", "paths": [f"{corpus_on_s3}/wavs"]}))


@pytest.mark.parametrize("name", ["lhotse_cuts", "lhotse_rs"])
def test_lhotse_manifests_on_an_object_store_give_the_same_items_labels_and_bytes(corpus_on_s3, corpus, demo_corpus,
                                                                                  tmp_path, name):
    """Relative sources resolve against the manifest's folder on the store."""
    spec = POOLS[name][0]
    remote = {**spec, "paths": [f"{corpus_on_s3}/{p}" for p in spec["paths"]]}
    _same_on_the_store(corpus, demo_corpus, tmp_path, spec, remote, corpus_on_s3)


def test_plain_and_listed_lhotse_manifests_on_an_object_store(corpus_on_s3, corpus, demo_corpus):
    import boto3

    s3 = boto3.client("s3")
    plain = gzip.decompress((corpus.root / "manifests" / "cuts.jsonl.gz").read_bytes())
    s3.put_object(Bucket="corpus", Key="c/manifests/plain.jsonl", Body=plain)
    s3.put_object(Bucket="corpus", Key="c/manifests/listed/cuts.json", Body=b"[\n{}\n]\n")
    try:
        pool = index_pools(_recipe(demo_corpus, corpus.root, {
            "format": "lhotse", "paths": [f"{corpus_on_s3}/manifests/*.jsonl"]})).pools["speech"]
        assert pool.items == [f"{corpus_on_s3}/manifests/plain.jsonl#cut-{u.id}" for u in corpus.utts]
        with pytest.raises(InputError, match=r"a JSON list.*lhotse copy cuts\.json cuts\.jsonl\.gz"):
            index_pools(_recipe(demo_corpus, corpus.root, {
                "format": "lhotse", "paths": [f"{corpus_on_s3}/manifests/listed/cuts.json"]}))
        with pytest.raises(InputError, match="matches no object"):
            index_pools(_recipe(demo_corpus, corpus.root, {
                "format": "lhotse", "paths": [f"{corpus_on_s3}/manifests/none.jsonl.gz"]}))
    finally:
        s3.delete_object(Bucket="corpus", Key="c/manifests/plain.jsonl")
        s3.delete_object(Bucket="corpus", Key="c/manifests/listed/cuts.json")
