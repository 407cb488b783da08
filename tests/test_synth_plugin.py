"""A synthesizer written outside engine/, from docs/synthesizers.md alone: its code blocks
become a package, installed by its entry point (the metadata pip writes), and it runs end
to end (Ray, coverage, slices, export) and keeps the contract. Also: what the registry
says when a plugin is broken."""

from __future__ import annotations

import csv
import importlib
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from engine.errors import RecipeError
from engine.recipe import parse_recipe
from engine.synth import registry
from engine.synth_checks import CHECKS, check_context

DOC = Path(__file__).resolve().parent.parent / "docs" / "synthesizers.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def _blocks(lang: str) -> list[str]:
    return [body for kind, body in BLOCK.findall(DOC.read_text()) if kind == lang]


def install_from_doc(root: Path, corpus: Path) -> Path:
    """Write the doc's package and an installed distribution's metadata under ``root``;
    returns the doc's recipe, pointed at ``corpus``."""
    files = [b for b in _blocks("python") if re.match(r"# gain_crop/\w+\.py\n", b)]
    assert len(files) == 3, "the doc shows gain_crop/__init__.py, config.py and synth.py"
    for body in files:
        rel = body.splitlines()[0][2:]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(body)
    project = tomllib.loads(_blocks("toml")[0])
    dist = root / "gain_crop-0.1.0.dist-info"  # what `pip install` writes for the entry point
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['project']['name']}\nVersion: 0.1.0\n")
    eps = project["project"]["entry-points"]
    (dist / "entry_points.txt").write_text(
        "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()) for group, entries in eps.items())
    )
    recipe = yaml.safe_load(_blocks("yaml")[0])
    recipe["pools"]["speech"]["manifest"] = str(corpus / "speech" / "manifest.csv")
    path = root / "gain_crop_demo.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture
def plugin(tmp_path, demo_corpus, monkeypatch):
    """The doc's plugin importable in this process; the registry put back afterwards."""
    root = tmp_path / "site"
    root.mkdir()
    recipe = install_from_doc(root, demo_corpus)
    saved = registry.registrations()  # loaded first: a module imported once does not register again
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    monkeypatch.setattr(registry, "_LOADED", False)
    yield root, recipe
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
    for name in [m for m in sys.modules if m == "gain_crop" or m.startswith("gain_crop.")]:
        del sys.modules[name]


def _cli(args, root: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_doc_synthesizer_keeps_the_contract(plugin, tmp_path):
    _, recipe_path = plugin
    assert "gain_crop" in registry.registrations()
    recipe = parse_recipe(yaml.safe_load(recipe_path.read_text()), base_dir=recipe_path.parent)
    ctx = check_context(recipe, tmp_path / "checks", samples=6)
    for check in CHECKS:
        check(ctx)


@pytest.mark.ray
def test_the_doc_synthesizer_runs_end_to_end(plugin, tmp_path):
    root, recipe = plugin
    out = tmp_path / "out"
    res = _cli(["run", str(recipe), "--out", str(out), "--workers", "1", "--no-progress"], root, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    record = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() \
        else json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["total_rows"] == 40

    cov = _cli(["coverage", str(out), "--json"], root, tmp_path)
    assert cov.returncode == 0, cov.stderr[-2000:]
    report = json.loads(cov.stdout)
    speech = report["pools"]["speech"]
    assert speech["items_used"] > 1 and speech["seconds_used"] == pytest.approx(40.0, rel=1e-3)
    assert any(name.startswith("gain_db") for name in report["params"])

    import pyarrow.ipc as ipc

    rows = []
    for shard in sorted(out.rglob("*.arrow")):
        with ipc.open_stream(shard) as reader:
            rows += reader.read_all().select(["sample_id", "params"]).to_pylist()
    preds = tmp_path / "preds.csv"
    with open(preds, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sample_id", "correct"])
        for r in rows:  # the model is wrong on every boosted row
            w.writerow([r["sample_id"], int(json.loads(r["params"])["gain_db"] <= 0)])
    sl = _cli(["mismatch", "slices", "--shards", str(out), "--predictions", str(preds), "--json"], root, tmp_path)
    assert sl.returncode == 0, sl.stderr[-2000:]
    dims = json.loads(sl.stdout)["dimensions"]
    band = {c["category"]: c for c in dims["gain band"]}
    assert band["boosted"]["error_rate"] == 1.0 and band["attenuated"]["error_rate"] == 0.0
    assert "speech item" in dims

    ex = _cli(["export", str(out), "--split", "train", "--to", str(tmp_path / "ex"), "--n", "3"], root, tmp_path)
    assert ex.returncode == 0, ex.stderr[-2000:]
    assert len(list((tmp_path / "ex").glob("*.flac"))) == 3 and len(list((tmp_path / "ex").glob("*.json"))) == 3

    # replay asks only the plugin's hooks: its rows are made again byte for byte
    sid = rows[5]["sample_id"]
    rp = _cli(["replay", str(out), sid, "--check", "--to", str(tmp_path / "again.flac")], root, tmp_path)
    assert rp.returncode == 0 and "byte-identical" in rp.stdout, rp.stderr[-2000:]


def test_a_plugin_that_fails_to_import_is_named(tmp_path, monkeypatch):
    root = tmp_path / "site"
    (root / "broken_synth").mkdir(parents=True)
    (root / "broken_synth" / "__init__.py").write_text("raise ImportError('needs a missing library')\n")
    dist = root / "broken_synth-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-synth\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[shardsmith.synthesizers]\nbroken = broken_synth\n")
    saved = registry.registrations()  # loaded first: a module imported once does not register again
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    monkeypatch.setattr(registry, "_LOADED", False)
    try:
        with pytest.raises(RecipeError, match=r"synthesizer 'broken'.*broken_synth.*needs a missing library"):
            registry.registrations()
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)
        registry._LOADED = True


def test_a_config_without_its_type_literal_is_refused():
    from engine.config import SynthConfig

    class Loose(SynthConfig):
        speech: str

    with pytest.raises(RecipeError, match=r"must declare `type: Literal\['loose'\]`"):
        registry.register("loose", Loose, "x:Y")
    assert "loose" not in registry._REGISTRY


def test_an_unknown_synth_type_lists_the_registered_ones(demo_corpus):
    data = {"name": "x", "seed": 1, "pools": {"s": {"paths": [str(demo_corpus / "rir" / "*.wav")]}},
            "splits": {"train": {"samples": 1}}, "synth": {"type": "speech_noise_mixx", "speech": "s"}}
    with pytest.raises(RecipeError, match=r"synth\.type: unknown value 'speech_noise_mixx'.*speech_noise_mix"):
        parse_recipe(data)
