"""Environment defaults the engine sets before any dependency reads them.

Importing :mod:`engine` applies them (``setdefault``: a value the user exported wins);
processes the engine starts itself (``ray start`` in :mod:`engine.localcluster`) get
them unconditionally.

Example::

    env = {**os.environ, **DEFAULTS}   # the environment of a child process
"""

from __future__ import annotations

import os
import sys
from typing import MutableMapping

# albumentations checks PyPI for updates on import unless told not to; we never want
# a network call at run time, on the driver or in a worker.
DEFAULTS: dict[str, str] = {"NO_ALBUMENTATIONS_UPDATE": "1"}

# A folder where the processes of one local run (its driver and the workers of the Ray
# instance it starts, which inherit the driver's environment) share the whole decodes of
# long lossless noise files: one decode per machine instead of one per process
# (engine.audio.io; the run makes the folder and removes it at its end).
SHARED_DECODES_ENV = "SHARDSMITH_SHARED_DECODES"


def apply_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set every default the environment does not set already.

    Example: ``apply_defaults()  # os.environ["NO_ALBUMENTATIONS_UPDATE"] == "1" unless exported``
    """
    for key, value in DEFAULTS.items():
        environ.setdefault(key, value)


apply_defaults()


_ARROW_TOLD = False  # pyarrow was told once in this process: later calls (one per shard) do nothing


class _PandasHeldBack:
    """A meta path finder that makes ``import pandas`` fail, for one call (see below)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas":
            raise ImportError("pandas held back from pyarrow's first look (engine.env)")
        return None


def arrow_without_pandas() -> bool:
    """Spare this process the pandas import pyarrow makes on its first array.

    pyarrow imports pandas (when installed) the first time it builds an array from Python
    objects, only to ask whether they are pandas objects: about 50 MB of memory and 0.2 s
    in the driver and in every worker, where shardsmith never hands it one. Called once,
    in the processes shardsmith owns (the ``shardsmith`` command, its Ray workers), before
    anything else builds an array: pyarrow asks once, is told pandas is missing, and does
    not ask again; a call that needs pandas (``Table.to_pandas``) still imports it then.
    Returns whether pyarrow was told by this call (False: pandas was loaded already, or
    pyarrow had looked, or an earlier call told it).

    Example: ``arrow_without_pandas()  # at the top of a process's main``
    """
    global _ARROW_TOLD
    if _ARROW_TOLD or "pandas" in sys.modules or "pyarrow.pandas_compat" in sys.modules:
        return False
    import pyarrow as pa  # lazily: engine.env is imported before anything else and needs no Arrow

    finder = _PandasHeldBack()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])  # pyarrow's one look for pandas happens here
    finally:
        sys.meta_path.remove(finder)
    _ARROW_TOLD = "pandas" not in sys.modules
    return _ARROW_TOLD
