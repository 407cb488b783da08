"""``format: webdataset``: the items of WebDataset tar shards, listed from their headers.

Members are grouped by key as WebDataset groups them (``webdataset.tariterators``:
``base_plus_ext``, ``group_by_keys``): the key is a member's name up to the first dot of
its file name, folders kept; adjacent members with one key are one sample. The media
member is chosen by extension (or named by ``media_column``); ``.json`` (flattened),
``.txt`` (``text``) and ``.cls`` (``label``) members are labels. An item's locator is its
media member's byte range: workers read it by offset, never extracting a tar. Compressed
tars cannot be read by offset and are refused.

Example::

    listing = list_webdataset_items("wds", recipe.pools["wds"], recipe.base_dir)
    listing.ids[0]          # "shards/train-00003.tar#spk1/utt-0007"
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import tarfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

import pyarrow as pa

from .errors import InputError
from .media import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from .report import count
from .sources import Listing, Locator, encode, open_container
from .storage import Store, glob_uri, is_uri

# webdataset.tariterators.base_plus_ext: the key is everything up to the first dot of the
# member's file name (its folders included), the extension everything after it.
WDS_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
# Members that are labels: .json (an object, flattened), .txt and .cls (one label each).
WDS_LABEL_MEMBERS = {"txt": "text", "cls": "label"}
WDS_LABEL_MAX_BYTES = 4 * 2**20  # a label member larger than this is not a label
# First bytes of the compressions a tar is commonly shipped in: none can be read by offset.
_COMPRESSION_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz",
                      b"\x28\xb5\x2f\xfd": "zstd", b"\x04\x22\x4d\x18": "lz4"}
_TAR_BLOCK = 512
# Listing a tar on an object store reads ahead this much per request: the headers of small
# members come in one request, a large member is skipped by a seek.
_REMOTE_READ_AHEAD = 1 << 20


def wds_key(name: str) -> tuple[str, str] | None:
    """WebDataset's ``(key, extension)`` of a tar member name, the extension lowercased;
    None for a name without one (WebDataset skips such members).

    Example: ``wds_key("spk1/utt7.seg.FLAC") == ("spk1/utt7", "seg.flac")``
    """
    match = WDS_KEY.match(name)
    if not match:
        return None
    return match.group(1), match.group(2).lower()


def _wds_meta(name: str) -> bool:
    """WebDataset's metadata members (``__key__``-like names), which it skips."""
    return ("/" not in name and name.startswith("__") and name.endswith("__")) or \
        re.match(r"__[^/]*__($|/)", name) is not None


@dataclass
class _Member:
    name: str
    offset: int  # of the member's data, in bytes from the start of the tar
    size: int
    sparse: bool = False


@dataclass
class _Sample:
    key: str
    members: dict[str, _Member] = field(default_factory=dict)  # extension -> member
    duplicates: list[str] = field(default_factory=list)


class _RemoteTar(io.RawIOBase):
    """A tar object as a raw file that, like a local file, may be sought past its end
    (tarfile skips a member's data by a seek, which pyarrow's input files refuse past
    the end of a cut-short tar); reads there return nothing."""

    def __init__(self, src: Any):
        self.src = src
        self.end = src.size()
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = max(0, offset + (0, self.pos, self.end)[whence])
        return self.pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.end - self.pos)
        if n <= 0:
            return 0
        data = self.src.read_at(n, self.pos)
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)


@contextmanager
def _open_tar(path: str) -> Iterator[IO[bytes]]:
    """A seekable binary file of a local tar or of a tar object (read ahead in blocks, so
    listing its headers takes few requests)."""
    if not is_uri(path):
        with open(path, "rb") as f:
            yield f
        return
    with open_container(path) as src, io.BufferedReader(_RemoteTar(src), buffer_size=_REMOTE_READ_AHEAD) as f:
        yield f


def _tar_size(path: str) -> int:
    """The size of a local tar or of a tar object (OSError if it cannot be read)."""
    if not is_uri(path):
        return os.stat(path).st_size
    size = Store.open(path).size("")
    if size is None:
        raise FileNotFoundError(f"no such object: {path}")
    return size


def _tar_members(path: str, shown: str) -> tuple[list[_Member], str | None]:
    """The regular members of an uncompressed tar, in order, from its headers alone; and
    why the listing stopped early, if it did (the members before that are kept)."""
    with _open_tar(path) as f:
        head = f.read(8)
        for magic, what in _COMPRESSION_MAGIC.items():
            if head.startswith(magic):
                raise InputError(
                    f"{shown}: a {what}-compressed tar; members of a compressed tar cannot be read by offset. "
                    f"Re-pack it uncompressed (for gzip: `gunzip -k {path.rsplit('/', 1)[-1]}` gives the same tar, "
                    "uncompressed)"
                )
        f.seek(0)
        members: list[_Member] = []
        try:
            tar = tarfile.open(fileobj=f, mode="r:")
        except (tarfile.TarError, ValueError) as exc:
            return members, f"not a tar file (tarfile: {exc})"
        while True:
            try:
                info = tar.next()
            except (tarfile.TarError, ValueError) as exc:
                return members, f"cut short or corrupt after member {members[-1].name if members else '-'} ({exc})"
            if info is None:
                break
            tar.members.clear()  # a shard can hold millions of members: keep none (webdataset does the same)
            if info.isreg():
                members.append(_Member(info.name, info.offset_data, info.size, info.issparse()))
        # tarfile ends quietly at a header it cannot parse; the end of a tar is zero blocks
        f.seek(tar.offset)
        block = f.read(_TAR_BLOCK)
        if block.strip(b"\0"):
            last = members[-1].name if members else "-"
            what = "cut short in a header" if len(block) < _TAR_BLOCK else "a corrupt header"
            return members, f"{what} at byte {tar.offset}, after member {last}"
    return members, None


def _wds_samples(members: list[_Member]) -> list[_Sample]:
    """Members grouped as WebDataset groups them: a sample per run of adjacent members
    with one key (metadata members and names without an extension are skipped)."""
    samples: list[_Sample] = []
    for m in members:
        split = None if _wds_meta(m.name) else wds_key(m.name)
        if split is None:
            continue
        key, ext = split
        if not samples or samples[-1].key != key:
            samples.append(_Sample(key))
        if ext in samples[-1].members:
            samples[-1].duplicates.append(m.name)
        else:
            samples[-1].members[ext] = m
    return samples


def _flatten(obj: dict[str, Any], prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Nested keys joined with ``.``; only plain values (text, numbers, booleans) kept.
    Two keys that join to one name (``"a.b"`` and ``{"a": {"b": ...}}``) raise
    :class:`_LabelClash`: one label would silently overwrite the other."""
    out = {} if out is None else out
    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            _flatten(v, name + ".", out)
        elif isinstance(v, (str, int, float, bool)):
            if name in out and not _same(out[name], v):
                raise _LabelClash(name, f"two keys of the .json member that join to it: {out[name]!r} and {v!r}")
            out[name] = v
    return out


class _LabelClash(Exception):
    """Two labels of one sample with one name and different values (the name, where they come from)."""


def _same(a: Any, b: Any) -> bool:
    """One label given twice with one value (``"2"`` and ``2`` too) loses nothing."""
    return a == b or str(a) == str(b)


def _wds_labels(f: Any, sample: _Sample, path: str = "") -> dict[str, Any]:
    """The labels of one sample from its .json, .txt and .cls members (ValueError: why not;
    InputError naming ``path``: two labels of one name, which is not one bad sample but
    how the shards were written)."""
    try:
        return _read_wds_labels(f, sample)
    except _LabelClash as clash:
        name, why = clash.args
        raise InputError(
            f"{path}: sample {sample.key!r} has two labels named {name!r} ({why}), so one would silently "
            "overwrite the other; rename the key in the .json members (a .txt member is the label 'text', "
            "a .cls member the label 'label')"
        ) from None


def _read_wds_labels(f: Any, sample: _Sample) -> dict[str, Any]:
    labels: dict[str, Any] = {}
    for ext in ("json", *WDS_LABEL_MEMBERS):
        m = sample.members.get(ext)
        if m is None:
            continue
        if m.size > WDS_LABEL_MAX_BYTES:
            raise ValueError(f"label member {m.name} is {m.size:,} bytes (labels take at most "
                             f"{WDS_LABEL_MAX_BYTES:,})")
        f.seek(m.offset)
        raw = f.read(m.size)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"label member {m.name} is not UTF-8 text") from None
        if ext == "json":
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"malformed .json member {m.name} ({exc})") from None
            if not isinstance(value, dict):
                raise ValueError(f".json member {m.name} holds a {type(value).__name__}, not an object")
            labels.update(_flatten(value))
        else:
            if ext == "txt":
                value = text.rstrip("\r\n")
            else:
                try:
                    value = int(text)
                except ValueError:
                    raise ValueError(f".cls member {m.name} holds {text.strip()[:40]!r}, not a class number") from None
            name = WDS_LABEL_MEMBERS[ext]
            if name in labels and not _same(labels[name], value):
                raise _LabelClash(name, f"the .json member's {labels[name]!r} and the .{ext} member's {value!r}")
            labels[name] = value
    return labels


def _label_table(rows: list[dict[str, Any]], pool_name: str, wanted: list[str] | None) -> pa.Table | None:
    """One column per label name any item has (null where an item lacks it). A name whose
    values differ in type between items becomes text; whole numbers mixed with fractions
    become floats."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    if wanted is not None:
        missing = [c for c in wanted if c not in names]
        if missing and rows:
            raise InputError(f"pools.{pool_name}.label_columns names {missing}, which no item has "
                             f"(labels: {', '.join(names) or 'none'})")
        names = list(wanted)
    columns: dict[str, pa.Array] = {}
    for name in names:
        values = [r.get(name) for r in rows]
        kinds = {type(v) for v in values if v is not None}
        if kinds == {bool}:
            columns[name] = pa.array(values, pa.bool_())
        elif kinds and kinds <= {int} and all(v is None or -2**63 <= v < 2**63 for v in values):
            columns[name] = pa.array(values, pa.int64())
        elif kinds and kinds <= {int, float}:
            columns[name] = pa.array([None if v is None else float(v) for v in values], pa.float64())
        else:
            columns[name] = pa.array([v if v is None or isinstance(v, str) else json.dumps(v) for v in values],
                                     pa.string())
    return pa.table(columns) if columns else None


def _wds_tars(pool_name: str, patterns: list[str], base_dir: Path) -> list[str]:
    """The tar files (local absolute paths or object URIs) the pool's ``paths`` name:
    files, globs, or folders (every ``.tar`` below)."""
    found: set[str] = set()
    for i, pattern in enumerate(patterns):
        where = f"pools.{pool_name}.paths[{i}]"
        if is_uri(pattern):
            if any(c in pattern for c in "*?["):
                matches = glob_uri(pattern)
            else:
                store = Store.open(pattern)
                names = store.list()
                matches = [store.display(n) for n in names if n.endswith(".tar")] if names else (
                    [store.uri] if store.exists("") else [])
            if not matches:
                raise InputError(f"{where}: {pattern!r} matches no objects")
            found.update(matches)
            continue
        full = pattern if os.path.isabs(pattern) else str(base_dir / pattern)
        if os.path.isdir(full):
            matches = [str(p) for p in Path(full).rglob("*.tar") if p.is_file()]
        else:
            matches = [m for m in glob.glob(full, recursive=True) if not os.path.isdir(m)]
        if not matches:
            raise InputError(f"{where}: {pattern!r} matches no files (looked for {full})")
        found.update(os.path.abspath(m) for m in matches)
    return sorted(found)


def _sample_problem(sample: _Sample, runs: int, media: list[str], tar_size: int, pool_name: str, pool: Any,
                    media_exts: set[str], wanted_ext: str | None) -> str | None:
    """Why a sample cannot be an item (its labels aside), or None."""
    if runs > 1:
        return (f"its members are not adjacent in the tar ({runs} runs of members with this key; WebDataset "
                "would read as many samples): re-pack with each key's members together")
    if sample.duplicates:
        return f"member {sample.duplicates[0]} appears twice in the tar"
    past = [m for m in sample.members.values() if m.offset + m.size > tar_size]
    if past:
        m = past[0]
        return (f"cut short: member {m.name} needs bytes {m.offset:,}..{m.offset + m.size:,}, the tar ends at "
                f"byte {tar_size:,} (a truncated tar: copy it again)")
    if not media:
        want = (f".{wanted_ext} member (pools.{pool_name}.media_column)" if wanted_ext else
                f"{pool.kind} member (one of .{', .'.join(sorted(media_exts))})")
        return f"a missing tar member: no {want}; the key has {', '.join('.' + e for e in sample.members)}"
    if len(media) > 1:
        return (f"two {pool.kind} members ({', '.join(sample.members[e].name for e in media)}); set "
                f"pools.{pool_name}.media_column to the extension to take")
    m = sample.members[media[0]]
    if m.sparse:
        return f"member {m.name} is a sparse file, which cannot be read by offset"
    if m.size == 0:
        return f"member {m.name} is empty (0 bytes)"
    return None


def list_webdataset_items(pool_name: str, pool: Any, base_dir: Path) -> Listing:
    """Every sample of the pool's WebDataset tar shards, as items (see the module
    docstring and docs/recipes.md): id ``shards/train-00003.tar#<key>``, a locator of the
    media member's bytes, and the labels of its .json / .txt / .cls members.

    Example: ``list_webdataset_items("wds", recipe.pools["wds"], recipe.base_dir).ids[0]``
    """
    wanted_ext = pool.media_column.lower().lstrip(".") if pool.media_column else None
    media_exts = {e.lstrip(".") for e in (AUDIO_EXTENSIONS if pool.kind == "audio" else IMAGE_EXTENSIONS)}
    ids: list[str] = []
    locators: list[str] = []
    label_rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []

    def reject(path: str, reason: str) -> None:
        rejects.append({"pool": pool_name, "path": path, "reason": reason})

    for path in _wds_tars(pool_name, pool.paths, base_dir):
        rel = path if is_uri(path) else Path(os.path.relpath(path, base_dir)).as_posix()
        try:
            size = _tar_size(path)
            members, problem = _tar_members(path, rel) if size else ([], None)
        except OSError as exc:
            reject(rel, f"not readable ({exc.strerror or exc})")
            continue
        samples = _wds_samples(members)
        if not samples:
            reject(rel, "empty file (0 bytes), not a tar" if not size else problem or (
                "empty tar: no members" if not members else
                f"no WebDataset samples: no member is named key.extension ({count(len(members), 'member')})"))
            continue
        runs: dict[str, int] = {}
        for sample in samples:
            runs[sample.key] = runs.get(sample.key, 0) + 1
        if problem and not any(m.offset + m.size > size for m in members):
            reject(rel, f"{problem}; the samples before it are used")
        seen: set[str] = set()
        with _open_tar(path) as f:
            for n, sample in enumerate(samples):
                if sample.key in seen:
                    continue  # a key in several runs is rejected once, at its first
                seen.add(sample.key)
                item = f"{rel}#{sample.key}"
                if wanted_ext:
                    media = [wanted_ext] if wanted_ext in sample.members else []
                else:
                    media = sorted(e for e in sample.members if e in media_exts)
                reason = _sample_problem(sample, runs[sample.key], media, size, pool_name, pool, media_exts, wanted_ext)
                if reason is None and problem and n == len(samples) - 1:
                    reason = f"the tar stops being readable after this sample ({problem}): its members may be cut off"
                if reason is None:
                    try:
                        labels = _wds_labels(f, sample, str(path))
                    except ValueError as exc:
                        reason = str(exc)
                if reason is not None:
                    reject(item, reason)
                    continue
                m = sample.members[media[0]]
                ids.append(item)
                locators.append(encode(Locator(src=path, offset=m.offset, size=m.size, name=m.name)))
                label_rows.append(labels)
    return Listing(ids, locators, _label_table(label_rows, pool_name, pool.label_columns), rejects)
