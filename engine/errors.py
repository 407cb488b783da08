"""One exception tree for everything shardsmith reports to a user.

Every message names the thing that is wrong (a recipe field, a file) and the fix, so the
CLI can print it without a traceback.
"""

from __future__ import annotations


class ShardsmithError(Exception):
    """Base of every error shardsmith raises on purpose."""

    exit_code = 1


class RecipeError(ShardsmithError):
    """The recipe (or a --set override) is malformed; nothing was run."""

    exit_code = 2


class InputError(ShardsmithError):
    """A source file or manifest cannot be used (and ``on_bad_input: fail`` is set)."""


class BadSourceError(InputError):
    """One source file is unusable; carries the path and a reason for ``rejects.jsonl``.

    Raised by probing and decoding code; the synthesis loop catches it, records the
    reject and draws the sample again.
    """

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # pickled across Ray with its fields, not its message
        return (type(self), (self.path, self.reason))


class SourceChangedError(ShardsmithError):
    """A source file differs from the one its pool index validated (truncated, rewritten,
    replaced): the run stops rather than mix two versions of the data."""

    def __init__(self, path: str, detail: str):
        super().__init__(
            f"{path}: changed after its pool was indexed ({detail}); rows drawn from it would mix two "
            "versions of the data. Restore the file, or re-run with --overwrite (or a new --out) to index "
            "the pools anew"
        )
        self.path = path
        self.detail = detail

    def __reduce__(self):  # pickled across Ray with its fields, not its message
        return (type(self), (self.path, self.detail))


class PoolIndexFault(ShardsmithError):
    """A source the pool index validated failed when a worker decoded it: the index was
    wrong about it. The run stops; no row that used the file is kept."""

    def __init__(self, pool: str, item: str, path: str, reason: str):
        super().__init__(
            f"{path}: {reason}. The pool index of pool {pool!r} had validated this file, so it changed or "
            "decodes differently now; the run stopped and keeps no row made from it"
        )
        self.pool, self.item, self.path, self.reason = pool, item, path, reason

    def __reduce__(self):  # pickled across Ray with its fields, not its message
        return (type(self), (self.pool, self.item, self.path, self.reason))


class SynthesisError(ShardsmithError):
    """A sample could not be made (for example every redraw hit a bad source)."""


class RejectSample(SynthesisError):
    """A drawn sample is unusable as drawn (peak over the limit with ``clipping: reject``,
    a silent noise segment); the sample is drawn again with the same generator."""


class ShardError(ShardsmithError):
    """An output shard or its stats cannot be written or read back."""


class ClusterError(ShardsmithError):
    """The Ray cluster given with ``--address`` cannot be reached or joined; nothing was
    written to the output."""

    exit_code = 2


class GuardError(ShardsmithError):
    """A coverage guard refused the run (it would be too narrow)."""

    exit_code = 3
