"""Messages a new user reads (issue 16): guard lines that never read as true when they
fail, one "fewer samples" figure that passes every guard, counts with the right plural."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from engine.coverage import describe_guards, forecast_coverage, guard_refusal
from engine.mismatch.embeddings import EmbeddingSet
from engine.plan import describe_plan, make_plan
from engine.pools import index_pools
from engine.recipe import parse_recipe
from engine.report import count, plural

ROOT = Path(__file__).parent.parent


def test_a_failing_guard_line_shows_the_relation_that_holds():
    lines = describe_guards([
        {"name": "max_reuse_factor", "pool": "speech", "value": 45.0, "limit": 20.0, "passed": False},
        {"name": "max_reuse_factor", "pool": "cabin", "value": 11.4, "limit": 20.0, "passed": True},
        {"name": "min_effective_sources", "pool": "rirs", "value": 2.0, "limit": 3.0, "passed": False},
        {"name": "min_effective_sources", "pool": "cabin", "value": 9.8, "limit": 3.0, "passed": True},
    ])
    assert lines[0].split()[-3:] == ["45", ">", "20"] and lines[0].split()[0] == "FAIL"
    assert lines[1].split()[-3:] == ["11.4", "<=", "20"]
    assert lines[2].split()[-3:] == ["2", "<", "3"]
    assert lines[3].split()[-3:] == ["9.8", ">=", "3"]


def _demo_recipe(corpus: Path, tmp_path: Path, train: int, scale: float = 1.0):
    text = (ROOT / "recipes" / "demo_in_car.yaml").read_text().replace("../demo_data", str(corpus))
    data = yaml.safe_load(text)
    data["splits"]["train"]["samples"] = train
    for split in data["splits"].values():
        split["samples"] = max(1, int(split["samples"] * scale))
    return parse_recipe(data, base_dir=tmp_path)


def test_a_refused_forecast_suggests_one_sample_count_that_passes_every_guard(demo_corpus, tmp_path):
    recipe = _demo_recipe(demo_corpus, tmp_path, 5000)
    index = index_pools(recipe)
    forecast = forecast_coverage(recipe, index)
    assert not forecast["passed"]
    message = guard_refusal(forecast, recipe)
    fewer = [line for line in message.splitlines() if "fewer samples" in line]
    assert len(fewer) == 1, message
    n = forecast["max_samples_passing"]
    assert f"at most about {n} in total instead of {forecast['samples']}" in fewer[0]
    # scale every split alike to that total: the forecast passes; a tenth more fails
    for factor, passes in [(0.98, True), (1.1, False)]:
        scaled = _demo_recipe(demo_corpus, tmp_path, 5000, n * factor / forecast["samples"])
        assert forecast_coverage(scaled, index)["passed"] is passes, factor


def test_plural_and_count():
    assert count(1, "shard") == "1 shard" and count(0, "shard") == "0 shards" and count(2, "shard") == "2 shards"
    assert plural(1, "match", "matches") == "match" and plural(3, "match", "matches") == "matches"


def test_the_plan_says_1_shard_not_1_shards(demo_corpus, tmp_path):
    text = describe_plan(make_plan(_demo_recipe(demo_corpus, tmp_path, 100)))
    assert "1 shards" not in text and " 1 shard " in text, text
    assert "in 3 shards" in text
    one = [line for line in text.splitlines() if line.strip().startswith("train_dev ")][0]
    assert ".." not in one  # one shard: its name, not a range from it to itself


def test_mismatch_data_counts_rows_not_shards():
    emb = EmbeddingSet(name="dev", path="out/tour", kind="shards", ids=[str(i) for i in range(80)],
                       X=np.zeros((80, 2)), n_available=80, splits=["train_dev_unseen"])
    assert emb.describe() == "dev: out/tour -- 80 rows of split train_dev_unseen"
    files = EmbeddingSet(name="dev", path="d", kind="audio", ids=["a"], X=np.zeros((1, 2)), n_available=1)
    assert files.describe() == "dev: d -- 1 audio file"
