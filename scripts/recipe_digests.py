"""Run every recipe in recipes/ on the demo corpus and print one sha256 per shard.

A restructuring that must not change any output is checked by running this before and
after it, in one environment, and comparing the two listings (``diff before.txt after.txt``).

The demo recipes, and the templates written for the demo corpus (``ON_THE_DEMO_CORPUS``),
run as they are (a smaller sample count keeps it quick). The other templates
for real corpora name folders that do not exist here, so each is copied into a scratch
folder whose layout matches what the template expects, built from the demo corpus:
the paths the template names resolve, and nothing else of the recipe changes.

    python scripts/recipe_digests.py --demo demo_data --work /tmp/digests > digests.txt
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
SMALL = [
    "--set", "splits.train.samples=120",
    "--set", "output.samples_per_shard=50",
]


def _link_tree(files, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = dest / f.name
        if not target.exists():
            os.symlink(f.resolve(), target)


def _as_flac(files, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        data, rate = sf.read(f, dtype="float32")
        sf.write(dest / (f.stem + ".flac"), data, rate, subtype="PCM_16")


def _speech_manifest(demo: Path, dest: Path, extra: dict | None = None) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(demo / "speech/manifest.csv") as src, open(dest, "w", newline="") as out:
        rows = list(csv.DictReader(src))
        fields = list(rows[0]) + list(extra or {})
        w = csv.DictWriter(out, fieldnames=fields)
        w.writeheader()
        for r in rows:
            r["path"] = str((demo / "speech" / r["path"]).resolve())
            r.update(extra or {})
            w.writerow(r)


def _layout_in_car_template(demo: Path, work: Path) -> Path:
    rec = work / "recipes"
    _speech_manifest(demo, rec / "corpora/speech/train.csv")
    _as_flac(sorted((demo / "noise/car").glob("*.wav")), rec / "corpora/noise/car/a")
    _as_flac(sorted((demo / "noise/road").glob("*.wav")), rec / "corpora/noise/road")
    _link_tree(sorted((demo / "noise/clatter").glob("*.wav")), rec / "corpora/noise/events")
    _link_tree(sorted((demo / "rir").glob("*.wav")), rec / "corpora/rir/car")
    return rec


def _layout_from_splits(demo: Path, work: Path) -> Path:
    rec = work / "recipes"
    _speech_manifest(demo, work / "splits/train.csv", {"origin": "web"})
    _link_tree(sorted((demo / "noise/car").glob("*.wav")), work / "data/noise/car/x")
    _link_tree(sorted((demo / "noise/road").glob("*.wav")), work / "data/noise/road")
    return rec


def _layout_mobile_photos(demo: Path, work: Path) -> Path:
    rec = work / "recipes"
    dest = work / "data/web_photos"
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / "manifest.csv", "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["path", "label"])
        for p in sorted((demo / "images/photos").rglob("*.png")):
            w.writerow([str(p.resolve()), p.parent.name])
    return rec


def _layout_hf_speech(demo: Path, work: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rec = work / "recipes"
    dest = rec / "corpora/librispeech/data"
    dest.mkdir(parents=True, exist_ok=True)
    with open(demo / "speech/manifest.csv") as src:
        rows = [{"audio": {"bytes": (demo / "speech" / r["path"]).read_bytes(), "path": r["path"]},
                 "text": r["text"], "speaker_id": r["speaker"]} for r in csv.DictReader(src)]
    schema = pa.schema([("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                        ("text", pa.string()), ("speaker_id", pa.string())])
    for k in range(2):  # the Hub's layout: the rows split over numbered Parquet files
        pq.write_table(pa.Table.from_pylist(rows[k::2], schema=schema),
                       dest / f"train.clean.100-0000{k}-of-00002.parquet")
    _as_flac(sorted((demo / "noise/car").glob("*.wav")), rec / "corpora/noise/car/a")
    return rec


def _layout_common_voice(demo: Path, work: Path) -> Path:
    rec = work / "recipes"
    root = rec / "corpora/cv-corpus/en"
    (root / "clips").mkdir(parents=True, exist_ok=True)
    lines = ["client_id\tpath\tsentence\tgender"]
    with open(demo / "speech/manifest.csv") as src:
        for i, r in enumerate(csv.DictReader(src)):
            data, rate = sf.read(demo / "speech" / r["path"], dtype="float32")
            name = f"common_voice_en_{i:05d}.mp3"
            sf.write(root / "clips" / name, data, rate, format="MP3")
            lines.append(f"{r['speaker']}\t{name}\t{r['text']}\t{'female' if i % 2 else 'male'}")
    (root / "train.tsv").write_text("\n".join(lines) + "\n")
    _as_flac(sorted((demo / "noise/car").glob("*.wav")), rec / "corpora/noise/car/a")
    return rec


# Templates that name the demo corpus (../demo_data) themselves: run as the demo recipes are.
ON_THE_DEMO_CORPUS = ("call_centre.yaml", "in_car_hands_free.yaml")

TEMPLATES = {
    "in_car_template.yaml": (_layout_in_car_template, ["--set", "splits.train_dev.samples=20",
                                                       "--set", "splits.train_dev_unseen.samples=20",
                                                       "--allow-narrow"]),
    "template_in_car_from_splits.yaml": (_layout_from_splits, ["--set", "splits.train_dev_unseen.samples=20",
                                                               "--allow-narrow"]),
    "template_hf_speech.yaml": (_layout_hf_speech, ["--set", "splits.train_dev.samples=20",
                                                     "--set", "splits.train_dev_unseen.samples=20",
                                                     "--allow-narrow"]),
    "template_common_voice.yaml": (_layout_common_voice, ["--set", "splits.train_dev.samples=20",
                                                          "--set", "splits.train_dev_unseen.samples=20",
                                                          "--allow-narrow"]),
    "mobile_photos.yaml": (_layout_mobile_photos, ["--set", "splits.train_dev.samples=20",
                                                   "--set", "splits.train_dev_unseen.samples=20",
                                                   "--allow-narrow"]),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default="demo_data", help="the demo corpus (shardsmith demo-corpus DIR)")
    ap.add_argument("--work", default="/tmp/shardsmith-digests", help="scratch folder (emptied first)")
    ap.add_argument("--workers", default="2")
    ap.add_argument("--only", nargs="*", help="recipe file names to run (default: all)")
    args = ap.parse_args(argv)
    demo = Path(args.demo).resolve()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    exe = Path(sys.executable).parent / "shardsmith"
    for recipe in sorted((ROOT / "recipes").glob("*.yaml")):
        if args.only and recipe.name not in args.only:
            continue
        extra: list[str] = ["--allow-narrow"]
        on_demo = recipe.name.startswith("demo_") or recipe.name in ON_THE_DEMO_CORPUS
        if recipe.name not in TEMPLATES and not on_demo:
            print(f"{recipe.name} SKIPPED: a template with no demo layout in this script", flush=True)
            continue
        if recipe.name in TEMPLATES:
            layout, extra = TEMPLATES[recipe.name]
            rec_dir = layout(demo, work / recipe.stem)
            rec_dir.mkdir(parents=True, exist_ok=True)
            path = rec_dir / recipe.name
            shutil.copy(recipe, path)
        else:
            # demo recipes (and ON_THE_DEMO_CORPUS) name ../demo_data: a copy beside a link to the corpus
            rec_dir = work / recipe.stem / "recipes"
            rec_dir.mkdir(parents=True, exist_ok=True)
            link = rec_dir.parent / "demo_data"
            if not link.exists():
                os.symlink(demo, link)
            path = rec_dir / recipe.name
            shutil.copy(recipe, path)
        out = work / recipe.stem / "out"
        cmd = [str(exe), "run", str(path), "--out", str(out), "--workers", args.workers,
               "--no-progress", *SMALL, *extra]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"{recipe.name} FAILED ({res.returncode}): {res.stderr.strip()[-2000:]}", flush=True)
            continue
        for shard in sorted(out.rglob("*")):
            if shard.suffix in (".arrow", ".parquet"):
                digest = hashlib.sha256(shard.read_bytes()).hexdigest()
                print(f"{recipe.name} {shard.relative_to(out)} {digest}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
