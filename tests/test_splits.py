"""The split planner: dev and test from the target only, train-dev from train's
distribution, deterministic by seed, manifests that work as recipe pools."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.cli import main
from engine.errors import InputError
from engine.pools import index_pool, index_pools
from engine.recipe import AudioPool, parse_recipe
from engine.splits import parse_size, plan_splits, write_splits


def _manifest(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def origins(tmp_path) -> dict[str, Path]:
    """web: 300 items of 30 speakers; app: 120 items of 12 speakers (files need not exist)."""
    web = _manifest(tmp_path / "web" / "m.csv", [
        {"path": f"clips/w{i:03d}.wav", "text": f"w{i}", "speaker": f"ws{i % 30}"} for i in range(300)])
    app = _manifest(tmp_path / "app" / "m.csv", [
        {"path": f"/data/app/a{i:03d}.flac", "text": f"a{i}", "speaker": f"as{i % 12}", "device": "phone"}
        for i in range(120)])
    return {"web": web, "app": app}


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dev_and_test_come_only_from_the_target_and_the_rest_of_it_trains(origins):
    plan = plan_splits(origins, "app", dev=30, test=30, train_dev=0.05, seed=1)
    s = plan.summary["splits"]
    assert s["dev"] == {"rows": 30, "by_origin": {"web": 0, "app": 30}}
    assert s["test"] == {"rows": 30, "by_origin": {"web": 0, "app": 30}}
    assert s["train"]["by_origin"]["app"] + s["train_dev"]["by_origin"]["app"] == 60
    assert s["train"]["by_origin"]["web"] + s["train_dev"]["by_origin"]["web"] == 300
    paths = {name: set(t.column("path").to_pylist()) for name, t in plan.tables.items()}
    for a in paths:
        for b in paths:
            assert a == b or not paths[a] & paths[b]
    assert sum(len(p) for p in paths.values()) == 420


def test_train_dev_follows_the_training_mix_of_origins(origins):
    plan = plan_splits(origins, "app", dev=30, test=30, train_dev=36, seed=2)
    td = plan.summary["splits"]["train_dev"]
    # pool: 300 web + 60 app -> 36 = 30 web + 6 app
    assert td == {"rows": 36, "by_origin": {"web": 30, "app": 6}}


def test_sizes_by_count_or_fraction(origins):
    plan = plan_splits(origins, "app", dev="25%", test=0.1, train_dev="10", seed=0)
    s = plan.summary["splits"]
    assert (s["dev"]["rows"], s["test"]["rows"], s["train_dev"]["rows"]) == (30, 12, 10)
    assert plan.summary["requested"] == {"dev": 0.25, "test": 0.1, "train_dev": 10}


@pytest.mark.parametrize("text, value", [("500", 500), ("0", 0), ("0.05", 0.05), ("5%", 0.05), (7, 7), (0.5, 0.5)])
def test_parse_size(text, value):
    assert parse_size(text, "--dev") == value


@pytest.mark.parametrize("text", ["1.0", "150%", "-3", "ten", "1e9x", True])
def test_bad_sizes_are_clear_errors(text):
    with pytest.raises(InputError, match="--dev"):
        parse_size(text, "--dev")


def test_same_seed_same_bytes_other_seed_other_split(origins, tmp_path):
    a = write_splits(plan_splits(origins, "app", dev=20, test=20, train_dev=0.05, seed=3), tmp_path / "a")
    b = write_splits(plan_splits(origins, "app", dev=20, test=20, train_dev=0.05, seed=3), tmp_path / "b")
    c = write_splits(plan_splits(origins, "app", dev=20, test=20, train_dev=0.05, seed=4), tmp_path / "c")
    for name in a:
        assert _sha(a[name]) == _sha(b[name])
    assert _sha(tmp_path / "a" / "split_summary.json") == _sha(tmp_path / "b" / "split_summary.json")
    assert _sha(a["dev"]) != _sha(c["dev"])


def test_written_manifests_carry_origin_and_labels_with_paths_relative_to_the_folder(origins, tmp_path):
    out = tmp_path / "splits"
    files = write_splits(plan_splits(origins, "app", dev=20, test=20, train_dev=0.05, seed=0), out)
    train = _read(files["train"])
    assert list(train[0]) == ["path", "origin", "text", "speaker", "device"]
    web = next(r for r in train if r["origin"] == "web")
    assert web["path"].startswith("../web/clips/") and web["device"] == ""
    assert (out / web["path"]).resolve() == (origins["web"].parent / "clips" / Path(web["path"]).name).resolve()
    summary = json.loads((out / "split_summary.json").read_text())
    assert summary["paths"] == "relative to this folder" and summary["sources"]["web"]["path"] == "../web/m.csv"
    absolute = write_splits(plan_splits(origins, "app", dev=20, test=20, train_dev=0.05, seed=0), tmp_path / "abs",
                            relative_paths=False, fmt="jsonl")
    first = json.loads(absolute["dev"].read_text().splitlines()[0])
    assert Path(first["path"]).is_absolute() and first["origin"] == "app"


def test_group_column_keeps_speakers_out_of_training_when_in_dev_or_test(origins, tmp_path):
    # A speaker recorded on both origins must not leak from web into training.
    web_rows = _read(origins["web"]) + [{"path": f"clips/x{i}.wav", "text": "x", "speaker": "as0"} for i in range(5)]
    _manifest(origins["web"], web_rows)
    plan = plan_splits(origins, "app", dev=20, test=20, train_dev=0.05, seed=5, group_column="speaker")
    speakers = {name: set(t.column("speaker").to_pylist()) for name, t in plan.tables.items()}
    held = speakers["dev"] | speakers["test"]
    assert not held & (speakers["train"] | speakers["train_dev"])
    assert not speakers["dev"] & speakers["test"]
    assert not speakers["train"] & speakers["train_dev"]
    assert plan.summary["splits"]["dev"]["rows"] >= 20 and plan.summary["splits"]["dev"]["rows"] % 10 == 0
    if "as0" in held:
        assert plan.summary["group_leaks_dropped"] == 5


def test_a_file_listed_twice_is_kept_once(origins):
    _manifest(origins["web"], _read(origins["web"]) + [{"path": "clips/w000.wav", "text": "dup", "speaker": "x"}])
    plan = plan_splits(origins, "app", dev=10, test=10, train_dev=5, seed=0)
    assert plan.summary["duplicates_dropped"] == 1
    assert sum(t.num_rows for t in plan.tables.values()) == 420
    assert "1 file listed more than once; each is kept once (its first listing)" in plan.notes  # not "1 file(s)"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": "phone"}, "--target 'phone' is not one of the source origins"),
        ({"dev": 100, "test": 30}, "need 130 target rows, but 'app' has only 120"),
        ({"train_dev": 360}, "would take the whole training pool"),
        ({"group_column": "accent"}, "--group-column 'accent': no manifest has that column"),
    ],
)
def test_impossible_requests_are_clear_errors(origins, kwargs, message):
    args = {"target": "app", "dev": 30, "test": 30, "train_dev": 0.05, "seed": 0} | kwargs
    target = args.pop("target")
    with pytest.raises(InputError, match=message):
        plan_splits(origins, target, **args)


def test_existing_split_files_are_not_overwritten_silently(origins, tmp_path):
    plan = plan_splits(origins, "app", dev=10, test=10, train_dev=5, seed=0)
    write_splits(plan, tmp_path / "s")
    with pytest.raises(InputError, match="use --overwrite"):
        write_splits(plan, tmp_path / "s")
    write_splits(plan, tmp_path / "s", overwrite=True)


@settings(max_examples=40, deadline=None)
@given(
    n_web=st.integers(0, 40), n_app=st.integers(2, 40), dev=st.integers(0, 10), test=st.integers(0, 10),
    td=st.floats(0.0, 0.5), seed=st.integers(0, 2**32),
)
def test_splits_partition_the_items_for_any_sizes(tmp_path_factory, n_web, n_app, dev, test, td, seed):
    base = tmp_path_factory.mktemp("prop")
    srcs = {"app": _manifest(base / "app.csv", [{"path": f"a{i}.wav"} for i in range(n_app)])}
    if n_web:
        srcs["web"] = _manifest(base / "web.csv", [{"path": f"w{i}.wav"} for i in range(n_web)])
    try:
        plan = plan_splits(srcs, "app", dev=dev, test=test, train_dev=td, seed=seed)
    except InputError:
        assert dev + test > n_app or round(td * (n_web + n_app - dev - test)) >= n_web + n_app - dev - test
        return
    s = plan.summary["splits"]
    assert (s["dev"]["rows"], s["test"]["rows"]) == (dev, test)
    all_paths = [p for t in plan.tables.values() for p in t.column("path").to_pylist()]
    assert len(all_paths) == len(set(all_paths)) == n_web + n_app
    for name in ("dev", "test"):
        assert set(plan.tables[name].column("origin").to_pylist()) <= {"app"}


def test_a_written_manifest_loads_as_a_pool_and_in_a_recipe(demo_corpus, tmp_path):
    speech = demo_corpus / "speech" / "manifest.csv"
    rows = _read(speech)
    absolute = [{**r, "path": str(speech.parent / r["path"])} for r in rows]
    web = _manifest(tmp_path / "web.csv", absolute[:80])
    app = _manifest(tmp_path / "app.csv", absolute[80:])
    out = tmp_path / "splits"
    files = write_splits(plan_splits({"web": web, "app": app}, "app", dev=10, test=10, train_dev=0.1, seed=1), out)
    items, rejects = index_pool("train", AudioPool(manifest=str(files["train"])), tmp_path)
    assert not rejects and len(items) == 80 + 20 - round(0.1 * 100)
    assert {r["origin"] for r in items.labels} == {"web", "app"}
    recipe = parse_recipe(
        {
            "name": "from_splits",
            "seed": 1,
            "pools": {"speech": {"manifest": "splits/train.csv"},
                      "car": {"paths": [str(demo_corpus / "noise" / "car" / "*.wav")]}},
            "splits": {"train": {"samples": 4}},
            "synth": {"type": "speech_noise_mix", "speech": "speech", "noise": [{"pool": "car", "snr_db_range": [0, 10]}]},
        },
        base_dir=tmp_path,
    )
    index = index_pools(recipe)
    assert len(index.pools["speech"]) == 90 and not index.rejects


def test_the_split_manifest_template_recipe_is_valid():
    from engine.recipe import load_recipe

    recipe = load_recipe(Path(__file__).parent.parent / "recipes" / "template_in_car_from_splits.yaml")
    assert recipe.pools["speech"].manifest == "../splits/train.csv"


def test_cli_split_writes_the_four_manifests(origins, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["split", "--source", f"web={origins['web']}", "--source", f"app={origins['app']}",
                 "--target", "app", "--dev", "20", "--test", "20", "--train-dev", "0.05", "--seed", "1",
                 "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "dev.csv", "split_summary.json", "test.csv", "train.csv", "train_dev.csv"]
    assert "dev" in capsys.readouterr().out
    assert main(["split", "--source", "web", "--target", "web", "--dev", "1", "--test", "1",
                 "--train-dev", "1", "--out", str(out)]) == 1
    assert "expected ORIGIN=PATH" in capsys.readouterr().err
