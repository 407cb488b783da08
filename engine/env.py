"""Environment defaults the engine sets before any dependency reads them.

Importing :mod:`engine` applies them (``setdefault``: a value the user exported wins);
processes the engine starts itself (``ray start`` in :mod:`engine.localcluster`) get
them unconditionally.

Example::

    env = {**os.environ, **DEFAULTS}   # the environment of a child process
"""

from __future__ import annotations

import os
from typing import MutableMapping

# albumentations checks PyPI for updates on import unless told not to; we never want
# a network call at run time, on the driver or in a worker.
DEFAULTS: dict[str, str] = {"NO_ALBUMENTATIONS_UPDATE": "1"}


def apply_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set every default the environment does not set already.

    Example: ``apply_defaults()  # os.environ["NO_ALBUMENTATIONS_UPDATE"] == "1" unless exported``
    """
    for key, value in DEFAULTS.items():
        environ.setdefault(key, value)


apply_defaults()
