"""Pool formats: the same speech read from loose FLAC files, from Hugging Face Parquet,
from WebDataset tar shards, from Lhotse manifests, and as MP3 and Opus files, through one
``speech_noise_mix`` recipe.

The data is made here, in a temporary folder (nothing is downloaded): ``--utterances``
ten-second 16 kHz FLAC utterances (the demo corpus's synthetic voices, made by
``audio_throughput.make_data``, with a transcript and a speaker each) and a ten-minute
FLAC noise file. The same FLAC bytes and labels are then stored three ways:

- ``files``: the loose FLAC files, listed by a manifest (``path,text,speaker``);
- ``parquet``: two Parquet files written by ``datasets`` (an ``audio`` struct of bytes
  and path cast to ``datasets.Audio(sampling_rate=16000)``, then ``to_parquet``), read
  with ``format: table``;
- ``webdataset``: two uncompressed tar shards in WebDataset's layout (``spk/utt.flac``,
  ``.json`` with the speaker, ``.txt`` with the transcript), read with
  ``format: webdataset``;
- ``lhotse``: Lhotse recordings + supervisions JSONL.gz manifests over the same FLAC
  files (a supervision per file, with its transcript and speaker), read with
  ``format: lhotse`` (items are segments, read by seeking);
- ``mp3`` and ``opus``: the utterances re-encoded as MP3 and as Ogg Opus files (the
  compressed formats' decode cost; their audio differs from the FLAC by the codec).

Each format's recipe differs only in its speech pool; the noise pool is the loose noise
file. In one process, no Ray, every shard of each recipe is made with
:func:`engine.worker.make_shard` (after indexing its pools and one untimed warm-up
shard); the formats take turns, ``--repeats`` rounds, and each keeps its best round.
Throughput is seconds of audio per second of wall time; the figure that matters is its
ratio to loose files (target: at least 0.9 for Parquet, tar shards and Lhotse; the
compressed formats' ratios are their cost).

    python benchmarks/pool_formats.py                  # 400 x 10 s, best of 3
    python benchmarks/pool_formats.py --utterances 100 --repeats 1
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pyarrow as pa  # noqa: E402
import yaml  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from audio_throughput import NOISE_FILE, SR, UTTERANCE_S, make_data  # noqa: E402

FORMATS = ("files", "parquet", "webdataset", "lhotse", "mp3", "opus")
CONTAINERS = ("parquet", "webdataset", "lhotse")  # the formats held to 0.9 of loose files
SHARDS_IN = 2  # Parquet files and tar shards the speech is stored in


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "speech" / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def write_parquet(folder: Path) -> None:
    """The speech as Hugging Face Parquet, written by ``datasets``."""
    import datasets

    datasets.disable_progress_bars()
    rows = _rows(folder)
    table = pa.table({
        "audio": pa.array([{"bytes": (folder / "speech" / r["path"]).read_bytes(), "path": r["path"]} for r in rows],
                          pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "text": [r["text"] for r in rows],
        "speaker": [r["speaker"] for r in rows],
    })
    ds = datasets.Dataset(table).cast_column("audio", datasets.Audio(sampling_rate=SR))
    (folder / "parquet").mkdir(exist_ok=True)
    for i in range(SHARDS_IN):
        ds.shard(SHARDS_IN, i, contiguous=True).to_parquet(
            str(folder / "parquet" / f"train-{i:05d}-of-{SHARDS_IN:05d}.parquet"))


def write_tars(folder: Path) -> None:
    """The speech as WebDataset tar shards: per utterance its .flac, .json and .txt."""
    rows = _rows(folder)
    (folder / "wds").mkdir(exist_ok=True)
    per = -(-len(rows) // SHARDS_IN)
    for i in range(SHARDS_IN):
        with tarfile.open(folder / "wds" / f"train-{i:05d}.tar", "w") as tar:
            for r in rows[i * per:(i + 1) * per]:
                key = r["path"].rsplit(".", 1)[0]
                for name, data in ((f"{key}.flac", (folder / "speech" / r["path"]).read_bytes()),
                                   (f"{key}.json", json.dumps({"speaker": r["speaker"]}).encode()),
                                   (f"{key}.txt", r["text"].encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def write_lhotse(folder: Path) -> None:
    """Lhotse recordings + supervisions manifests (JSONL.gz, Lhotse's own shape) over the
    loose FLAC files: one recording and one whole-file supervision per utterance."""
    import gzip

    import soundfile as sf

    (folder / "lhotse").mkdir(exist_ok=True)
    recs, sups = [], []
    for r in _rows(folder):
        path = folder / "speech" / r["path"]
        info = sf.info(str(path))
        rid = r["path"].rsplit(".", 1)[0].replace("/", "_")
        recs.append({"id": rid, "sources": [{"type": "file", "channels": [0], "source": str(path)}],
                     "sampling_rate": info.samplerate, "num_samples": info.frames,
                     "duration": info.frames / info.samplerate, "channel_ids": [0]})
        sups.append({"id": rid, "recording_id": rid, "start": 0.0, "duration": info.frames / info.samplerate,
                     "channel": 0, "text": r["text"], "speaker": r["speaker"]})
    for name, records in (("recordings", recs), ("supervisions", sups)):
        with gzip.open(folder / "lhotse" / f"{name}.jsonl.gz", "wt") as fh:
            fh.writelines(json.dumps(x) + "\n" for x in records)


def write_codec(folder: Path, fmt: str) -> None:
    """The utterances re-encoded as MP3 or Ogg Opus files, with their manifest."""
    import soundfile as sf

    dest = folder / fmt
    dest.mkdir(exist_ok=True)
    rows = _rows(folder)
    for r in rows:
        x, rate = sf.read(folder / "speech" / r["path"], dtype="float32")
        name = r["path"].rsplit(".", 1)[0].replace("/", "_")
        if fmt == "mp3":
            sf.write(dest / f"{name}.mp3", x, rate, format="MP3")
        else:
            sf.write(dest / f"{name}.opus", x, rate, format="OGG", subtype="OPUS")
        r["path"] = f"{name}.{fmt}"
    with open(dest / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def make_formats(folder: Path, utterances: int) -> None:
    make_data(folder, utterances, 600.0)
    marker = folder / "formats.json"
    want = {"utterances": utterances, "shards": SHARDS_IN, "version": 2}
    if marker.exists() and json.loads(marker.read_text()) == want:
        return
    for sub in ("parquet", "wds", "lhotse", "mp3", "opus"):
        shutil.rmtree(folder / sub, ignore_errors=True)
    write_parquet(folder)
    write_tars(folder)
    write_lhotse(folder)
    write_codec(folder, "mp3")
    write_codec(folder, "opus")
    marker.write_text(json.dumps(want))


def recipe_path(folder: Path, fmt: str, samples: int) -> Path:
    speech = {
        "files": {"manifest": str(folder / "speech" / "manifest.csv")},
        "parquet": {"format": "table", "paths": [str(folder / "parquet" / "*.parquet")]},
        "webdataset": {"format": "webdataset", "paths": [str(folder / "wds" / "*.tar")]},
        "lhotse": {"format": "lhotse", "paths": [str(folder / "lhotse" / "recordings.jsonl.gz"),
                                                 str(folder / "lhotse" / "supervisions.jsonl.gz")]},
        "mp3": {"manifest": str(folder / "mp3" / "manifest.csv")},
        "opus": {"manifest": str(folder / "opus" / "manifest.csv")},
    }[fmt]
    data = {
        "name": f"bench_{fmt}",
        "seed": 1,
        "output": {"format": "arrow", "samples_per_shard": max(1, samples // 4), "audio_codec": "flac"},
        "pools": {"speech": speech, "noise": {"paths": [str(folder / "noise" / NOISE_FILE)]}},
        "splits": {"train": {"samples": samples}},
        "synth": {"type": "speech_noise_mix", "speech": "speech", "sample_rate": SR,
                  "noise": [{"pool": "noise", "snr_db_range": [0, 20]}]},
        "guards": {"max_reuse_factor": None},
    }
    path = folder / f"{fmt}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Bench:
    """One format's recipe, indexed once; :meth:`run` times making all its shards."""

    def __init__(self, folder: Path, fmt: str, samples: int):
        from engine.plan import make_plan
        from engine.pools import index_pools
        from engine.recipe import load_recipe
        from engine.worker import make_shard

        self.fmt, self.folder, self.make_shard = fmt, folder, make_shard
        self.recipe = load_recipe(recipe_path(folder, fmt, samples))
        t0 = time.perf_counter()
        self.index = index_pools(self.recipe)
        self.index_s = time.perf_counter() - t0
        self.items = len(self.index.pools["speech"])
        self.plan = make_plan(self.recipe)
        out = folder / f"out-{fmt}-warm-up"
        self.make_shard(self.recipe, self.index, self.plan.shards[-1], out)  # untimed: first reads, imports
        shutil.rmtree(out, ignore_errors=True)

    def run(self, r: int) -> dict:
        out = self.folder / f"out-{self.fmt}-{r}"
        shutil.rmtree(out, ignore_errors=True)
        seconds = 0.0
        t0, c0 = time.perf_counter(), time.process_time()
        for spec in self.plan.shards:
            seconds += self.make_shard(self.recipe, self.index, spec, out)["stats"]["seconds"]
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        shutil.rmtree(out, ignore_errors=True)
        return {"seconds": seconds, "wall": wall, "cpu": cpu}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--utterances", type=int, default=400, help="ten-second utterances (default 400)")
    ap.add_argument("--samples", type=int, help="samples per recipe (default: as many as utterances)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; each format keeps its best (default 3)")
    ap.add_argument("--data", type=Path, help="keep the generated data here (reused when present)")
    args = ap.parse_args()
    samples = args.samples or args.utterances

    tmp = None
    if args.data:
        folder = args.data.resolve()
        folder.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="shardsmith-formats-bench-")
        folder = Path(tmp)
    try:
        t0 = time.perf_counter()
        make_formats(folder, args.utterances)
        size = {fmt: sum(p.stat().st_size for p in (folder / sub).rglob(pat))
                for fmt, sub, pat in (("files", "speech", "*.flac"), ("parquet", "parquet", "*.parquet"),
                                      ("webdataset", "wds", "*.tar"), ("mp3", "mp3", "*.mp3"),
                                      ("opus", "opus", "*.opus"))}
        print(f"data: {args.utterances} x {UTTERANCE_S:g} s FLAC utterances at {SR} Hz as loose files "
              f"({size['files'] / 2**20:.0f} MB), {SHARDS_IN} Parquet files ({size['parquet'] / 2**20:.0f} MB), "
              f"{SHARDS_IN} tar shards ({size['webdataset'] / 2**20:.0f} MB), Lhotse manifests over the FLAC files, "
              f"MP3 ({size['mp3'] / 2**20:.0f} MB) and Opus ({size['opus'] / 2**20:.0f} MB) files in {folder} "
              f"(made in {time.perf_counter() - t0:.0f} s)")
        benches = {fmt: Bench(folder, fmt, samples) for fmt in FORMATS}
        runs: dict[str, list[dict]] = {fmt: [] for fmt in FORMATS}
        for r in range(args.repeats):
            for fmt in FORMATS:  # interleaved: a slow moment of the machine hits every format
                runs[fmt].append(benches[fmt].run(r))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    def rtf(x: dict) -> float:
        return x["seconds"] / x["wall"]

    def rtf_cpu(x: dict) -> float:
        return x["seconds"] / x["cpu"]

    best = {fmt: max(rs, key=rtf) for fmt, rs in runs.items()}
    best_cpu = {fmt: max(rs, key=rtf_cpu) for fmt, rs in runs.items()}
    base, base_cpu = rtf(best["files"]), rtf_cpu(best_cpu["files"])
    print(f"\nspeech_noise_mix, {samples} samples of {UTTERANCE_S:g} s per format, engine.worker.make_shard in one "
          f"process (no Ray), best of {args.repeats} interleaved rounds; realtime factor by wall clock and by "
          "the process's CPU time, and as a ratio to loose files:")
    print(f"  {'speech pool':12s} {'items':>6s} {'index':>7s} {'wall':>7s} {'CPU':>7s} {'/ files':>8s} {'(CPU)':>6s}"
          "   all rounds (wall)")
    for fmt in FORMATS:
        w, c = rtf(best[fmt]), rtf_cpu(best_cpu[fmt])
        print(f"  {fmt:12s} {benches[fmt].items:6d} {benches[fmt].index_s:6.2f}s {w:6.0f}x {c:6.0f}x "
              f"{w / base:8.2f} {c / base_cpu:6.2f}   {', '.join(f'{rtf(x):.0f}x' for x in runs[fmt])}")
    ok = all(rtf(best[f]) / base >= 0.9 for f in CONTAINERS)
    print(f"  target: Parquet, tar shards and Lhotse >= 0.9 of loose files (wall): {'met' if ok else 'NOT met'}; "
          f"1-minute load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
