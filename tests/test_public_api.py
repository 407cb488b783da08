"""The package's public API (engine/__init__.py) answers as its docstrings say."""

import engine


def test_public_api_names_are_exported():
    for name in ("load_recipe", "parse_recipe", "recipe_hash", "run", "analyze_coverage",
                 "evaluate_errors", "evaluate_data", "evaluate_slices", "evaluate_probe", "replay",
                 "RecipeError", "GuardError"):
        assert name in engine.__all__ and hasattr(engine, name)


def test_evaluate_errors_names_the_dominant_gap():
    assert engine.evaluate_errors({"train": 0.01, "train_dev": 0.09, "dev": 0.10}).dominant == "variance"
    assert engine.evaluate_errors({"train": 0.01, "train_dev": 0.015, "dev": 0.10}).dominant == "data_mismatch"
