"""Image recipes (image_augment, image_composite) run end to end on a real local Ray
instance: same bytes on 1 and 2 workers, rows replay from their params, bad images end in
rejects.jsonl, holdout is respected, composite sources are counted per item, export writes
image files with provenance, and the shards load in Hugging Face ``datasets`` with a real
``Image`` column. The synthesizers without Ray: test_image_synth.py; the albumentations
pipeline in a recipe: test_image_recipe.py."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.cli import main as cli_main
from engine.pools import index_pools
from engine.recipe import load_recipe
from engine.run_record import shard_files
from engine.runtime import run
from engine.shards import read_shard
from engine.synth import build_synthesizer

from .conftest import digests, write_recipe

pytestmark = pytest.mark.ray


def rows(out: Path, split: str | None = None) -> list[dict]:
    return [r for f in shard_files(out, split) for r in read_shard(f).to_pylist()]


@pytest.fixture(scope="module")
def corpus(demo_corpus, tmp_path_factory) -> Path:
    """The demo photos plus two bad files, listed in a manifest of their own."""
    root = tmp_path_factory.mktemp("img_corpus")
    photos = demo_corpus / "images" / "photos"
    lines = ["path,label"]
    for line in (demo_corpus / "images" / "manifest.csv").read_text().splitlines()[1:]:
        rel, label = line.split(",")
        lines.append(f"{demo_corpus / 'images' / rel},{label}")
    good = (photos / "photo-000.png").read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 3])
    (root / "notes.png").write_text("not an image\n")
    lines += [f"{root / 'truncated.png'},car", f"{root / 'notes.png'},car"]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def augment_recipe(corpus: Path) -> dict:
    return {
        "name": "t_images",
        "seed": 11,
        "output": {"format": "arrow", "samples_per_shard": 12, "image_format": "jpeg", "image_quality": 85},
        "pools": {"photos": {"kind": "image", "manifest": str(corpus / "manifest.csv"), "holdout": 0.25}},
        "splits": {"train": {"samples": 24}, "train_dev_unseen": {"samples": 12, "holdout": True}},
        "synth": {"type": "image_augment", "images": "photos", "transforms": [
            {"HorizontalFlip": {"p": 0.5}},
            {"OneOf": {"p": 0.8, "transforms": ["MotionBlur", {"Defocus": {"radius": [2, 3]}}]}},
            {"GaussNoise": {"std_range": [0.02, 0.08], "p": 0.5}},
            {"ImageCompression": {"quality_range": [30, 70], "p": 0.7}},
        ]},
    }


def composite_recipe(demo_corpus: Path) -> dict:
    return {
        "name": "t_composite",
        "seed": 12,
        "output": {"format": "arrow", "samples_per_shard": 10, "image_format": "png"},
        "pools": {
            "objects": {"kind": "image", "mode": "rgba",
                        "manifest": str(demo_corpus / "images" / "foregrounds" / "manifest.csv")},
            "scenes": {"kind": "image", "paths": [str(demo_corpus / "images" / "backgrounds" / "*.png")]},
        },
        "splits": {"train": {"samples": 20}},
        "synth": {"type": "image_composite", "foregrounds": "objects", "backgrounds": "scenes",
                  "count_range": [1, 3], "transforms": [{"HorizontalFlip": {"p": 0.5}},
                                                        {"Affine": {"rotate": [-15, 15], "p": 0.5}}]},
        "guards": {"max_reuse_factor": None},
    }


@pytest.fixture(scope="module")
def augment_run(ray_local, corpus, tmp_path_factory) -> tuple[Path, Path]:
    path = write_recipe(tmp_path_factory.mktemp("r_aug") / "r.yaml", augment_recipe(corpus))
    out = tmp_path_factory.mktemp("aug") / "out"
    summary = run(load_recipe(path), out, workers=1, progress=False, log=lambda m: None)
    assert summary.status == "complete"
    return path, out


@pytest.fixture(scope="module")
def composite_run(ray_local, demo_corpus, tmp_path_factory) -> tuple[Path, Path]:
    path = write_recipe(tmp_path_factory.mktemp("r_comp") / "r.yaml", composite_recipe(demo_corpus))
    out = tmp_path_factory.mktemp("comp") / "out"
    run(load_recipe(path), out, workers=1, progress=False, log=lambda m: None)
    return path, out


@pytest.mark.parametrize("which", ["augment", "composite"])
def test_same_bytes_on_one_and_two_workers(which, augment_run, composite_run, tmp_path):
    path, out1 = augment_run if which == "augment" else composite_run
    out2 = tmp_path / "two"
    run(load_recipe(path), out2, workers=2, progress=False, log=lambda m: None)
    one, two = digests(out1), digests(out2)
    assert len(one) == (6 if which == "augment" else 4)
    assert one == two


def test_rows_replay_from_their_params(augment_run):
    path, out = augment_run
    recipe = load_recipe(path)
    synth = build_synthesizer(recipe, index_pools(recipe))
    for row in rows(out)[:6]:
        sample = synth.apply(json.loads(row["params"]))
        assert sample.columns["image"]["bytes"] == row["image"]["bytes"]
        assert json.loads(row["params"])["applied"] == sample.applied
    synth.close()


def test_bad_images_are_rejected_with_reasons_and_never_used(augment_run):
    _, out = augment_run
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    reasons = {Path(r["path"]).name: r["reason"] for r in rejects}
    assert set(reasons) == {"truncated.png", "notes.png"}
    assert "truncated" in reasons["truncated.png"] and "not an image" in reasons["notes.png"]
    used = {s["item"] for r in rows(out) for s in r["sources"]}
    assert not any(u.endswith(("truncated.png", "notes.png")) for u in used)


def test_rows_carry_labels_sizes_and_holdout(augment_run):
    path, out = augment_run
    recipe = load_recipe(path)
    pool = index_pools(recipe).pools["photos"]
    held = {it for it, h in zip(pool.items, pool.holdout) if h}
    for split, want_held in (("train", False), ("train_dev_unseen", True)):
        for row in rows(out, split):
            item = row["sources"][0]["item"]
            assert (item in held) == want_held
            assert row["label"] == pool.label_row(pool.items.index(item))["label"]
            img = cv2.imdecode(np.frombuffer(row["image"]["bytes"], np.uint8), cv2.IMREAD_COLOR)
            assert img.shape[:2] == (row["height"], row["width"]) == (192, 256)
            assert row["image"]["path"] == f"{row['sample_id']}.jpg"


def test_image_column_is_a_hugging_face_image(augment_run, composite_run):
    datasets = pytest.importorskip("datasets")
    for _, out in (augment_run, composite_run):
        shard = shard_files(out, "train")[0]
        ds = datasets.Dataset.from_file(str(shard))
        assert isinstance(ds.features["image"], datasets.Image)
        raw = ds.cast_column("image", datasets.Image(decode=False))[0]["image"]
        table_row = read_shard(shard).slice(0, 1).to_pylist()[0]
        assert raw["bytes"] == table_row["image"]["bytes"]
        img = cv2.imdecode(np.frombuffer(raw["bytes"], np.uint8), cv2.IMREAD_COLOR)
        assert img.shape[:2] == (table_row["height"], table_row["width"])
    objects = datasets.Dataset.from_file(str(shard_files(composite_run[1], "train")[0])).features["objects"]
    assert set(objects.feature) == {"label", "item", "box", "area", "mask"}


def test_composite_sources_are_counted_per_item(composite_run):
    _, out = composite_run
    counts: dict[tuple[str, str], int] = {}
    for row in rows(out):
        assert row["sources"][0]["pool"] == "scenes"
        assert len(row["sources"]) == 1 + len(json.loads(row["params"])["objects"])
        for s in row["sources"]:
            assert s["start_s"] == s["duration_s"] == s["gain_db"] == 0.0
            counts[(s["pool"], s["item"])] = counts.get((s["pool"], s["item"]), 0) + 1
        for obj in row["objects"]:
            x0, y0, x1, y1 = obj["box"]
            assert 0 <= x0 < x1 <= row["width"] and 0 <= y0 < y1 <= row["height"]
    from engine.coverage import analyze_coverage

    report = analyze_coverage(out)
    for pool in ("objects", "scenes"):
        figures = report["pools"][pool]
        assert figures["uses"] == sum(n for (p, _), n in counts.items() if p == pool)
        assert figures["items_used"] == sum(1 for (p, _) in counts if p == pool)
        assert figures["reuse_factor"] == pytest.approx(figures["uses"] / figures["items_used"], rel=1e-4)


def test_export_writes_image_files_with_provenance(composite_run, tmp_path):
    _, out = composite_run
    assert cli_main(["export", str(out), "--split", "train", "--n", "3", "--to", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("*.png"))) == 3
    side = json.loads(sorted(tmp_path.glob("*.json"))[0].read_text())
    # each object's mask is a PNG file the sidecar names relative to its own folder
    assert "objects" in side and all((tmp_path / o["mask"]).is_file() for o in side["objects"])
    assert "seed" in side["params"]


def test_the_stats_files_image_runs_write_pass_the_resume_checks(augment_run, composite_run):
    """Every stats file a real image run writes (params, embeddings) has the shape the
    resume checks accept, so a re-run never rewrites a good shard as damaged."""
    import json

    from engine.resume import stats_problem

    files = [f for _, out in (augment_run, composite_run) for f in sorted(out.glob("*/*.stats.json"))]
    assert files
    for f in files:
        record = json.loads(f.read_text())
        assert stats_problem(record["stats"]) == "", f
    assert any(json.loads(f.read_text())["stats"].get("embedding") for f in files)
