"""``format: lhotse``: the items of Lhotse manifests, read as the JSON they are (no
Lhotse, no torch).

Each path is a JSONL manifest (gzipped or not, told by its first bytes) as Lhotse's
``to_file`` / ``open_writer`` write it. A record is a cut if it has ``type`` (``MonoCut``,
or ``Cut`` from Lhotse before 0.8), a recording if it has ``sources``, and otherwise a
supervision segment, as Lhotse's own ``deserialize_item`` decides:

- a cut ``{"id", "start", "duration", "channel", "supervisions": [...], "recording":
  {...}, "type": "MonoCut"}`` is an item: that stretch of its recording;
- a supervision ``{"id", "recording_id", "start", "duration", "channel", "text",
  "speaker", "language", "gender"}`` is an item: that stretch of the recording of that
  id in the pool's recordings manifests;
- a recording ``{"id", "sources": [{"type": "file", "channels": [0], "source": "a.flac"}],
  "sampling_rate", "num_samples", "duration", "channel_ids"}`` is an item itself only in a
  pool with neither cuts nor supervisions.

The channel read is the cut's or supervision's, taken from the source file that holds
it (a recording may keep each channel in a file of its own). ``text``, ``speaker``,
``language`` and ``gender`` are labels (a cut's come from its first supervision). Only
``file`` sources are read; a relative source path resolves against the folder of the
manifest that holds the recording (on an object store, its folder there). A ``command``
source is refused, never run. Manifests may be local files or objects (``s3://...``).

Item ids are ``<manifest relative to the recipe's folder>#<id>``, for example
``cuts.jsonl.gz#cut-7`` or ``supervisions.jsonl.gz#sup-3``.

Example::

    listing = list_lhotse_items("cuts", recipe.pools["cuts"], recipe.base_dir)
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

from .errors import InputError
from .sources import Listing, Segment, label_table, open_container, with_segment
from .storage import Store, glob_uri, is_uri, join_location, parent_location

LABELS = ["text", "speaker", "language", "gender"]
MONO_CUT_TYPES = ("MonoCut", "Cut")
_NEVER_RUN = "shardsmith never runs a shell: convert the audio to files first"
_SOURCE_TYPES = {
    "command": f"a 'command' source ({{source!r}}); {_NEVER_RUN}",
    "url": "a 'url' source ({source!r}); download the audio and point a 'file' source at it",
    "memory": "audio held in the manifest (a 'memory' source); write it to files first",
    "shar": "a Lhotse Shar placeholder (a 'shar' source); export the audio to files first",
    "shar_ptr": "a pointer into a Lhotse Shar tar (a 'shar_ptr' source); export the audio to files first",
}


@dataclass(frozen=True)
class _Record:
    """One parsed line of a manifest, with where it came from."""

    data: dict[str, Any]
    manifest: str  # an absolute local path or an object URI
    shown: str  # the manifest relative to the recipe's folder, or its URI
    line: int


def _manifests(pool_name: str, pool: Any, base_dir: Path) -> list[str]:
    """The manifests the pool's ``paths`` name: absolute local paths or object URIs."""
    found: dict[str, None] = {}
    for i, pattern in enumerate(pool.paths):
        where = f"pools.{pool_name}.paths[{i}]"
        if is_uri(pattern):
            objects = (glob_uri(pattern) if any(c in pattern for c in "*?[") else
                       [pattern] if Store.open(pattern).exists("") else [])
            if not objects:
                raise InputError(f"{where}: {pattern!r} matches no object; name Lhotse JSONL manifests, e.g. "
                                 "s3://bucket/cuts.jsonl.gz, or recordings.jsonl.gz and supervisions.jsonl.gz")
            found.update(dict.fromkeys(objects))
            continue
        full = pattern if os.path.isabs(pattern) else str(base_dir / pattern)
        matches = sorted(os.path.abspath(m) for m in glob.glob(full, recursive=True) if os.path.isfile(m))
        if not matches:
            raise InputError(f"{where}: {pattern!r} matches no file (looked for {full}); name Lhotse JSONL "
                             "manifests, e.g. cuts.jsonl.gz, or recordings.jsonl.gz and supervisions.jsonl.gz")
        found.update(dict.fromkeys(matches))
    return list(found)


@contextmanager
def _open_text(path: str) -> Iterator[IO[str]]:
    """A manifest's lines, local or an object, gunzipped if its first bytes say so."""
    if not is_uri(path):
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        raw: IO[bytes] = gzip.open(path, "rb") if gzipped else open(path, "rb")
        with io.TextIOWrapper(raw, encoding="utf-8") as text:
            yield text
        return
    with open_container(path) as src, io.BufferedReader(src, buffer_size=1 << 20) as f:  # type: ignore[arg-type]
        gzipped = f.peek(2)[:2] == b"\x1f\x8b"
        body: IO[bytes] = gzip.GzipFile(fileobj=f, mode="rb") if gzipped else f  # type: ignore[assignment]
        with io.TextIOWrapper(body, encoding="utf-8") as text:
            yield text


def _records(pool_name: str, path: str, shown: str, rejects: list[dict[str, Any]]) -> Iterator[_Record]:
    """The records of one manifest; a line that is not a JSON object with an ``id`` is
    rejected with its line number, a manifest without any line as a whole."""
    number = 0
    try:
        with _open_text(path) as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                if number == 1 and line.strip() == "[":
                    raise InputError(f"{path}: a JSON list; shardsmith reads Lhotse's JSONL manifests "
                                     f"(`lhotse copy {Path(path).name} {Path(path).stem}.jsonl.gz` converts it)")
                try:
                    data = json.loads(line)
                except ValueError as exc:
                    rejects.append({"pool": pool_name, "path": f"{shown}#line={number}",
                                    "reason": f"not JSON ({exc})"})
                    continue
                if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
                    rejects.append({"pool": pool_name, "path": f"{shown}#line={number}",
                                    "reason": "not a Lhotse manifest record (a JSON object with an 'id')"})
                    continue
                yield _Record(data, path, shown, number)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        rejects.append({"pool": pool_name, "path": f"{shown}#line={number + 1}",
                        "reason": f"the manifest cannot be read past line {number} ({exc}); the lines before "
                                  "it are kept"})
        return
    if number == 0:
        rejects.append({"pool": pool_name, "path": shown, "reason": "empty manifest (no records)"})


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _file_and_channel(recording: Any, channel: Any, manifest: str) -> tuple[str, int | None]:
    """The file to read for ``channel`` of ``recording`` (a Lhotse recording dict), and
    the channel of that file (None: the whole file). Raises ValueError with the reason."""
    if not isinstance(recording, dict) or not isinstance(recording.get("sources"), list) or not recording["sources"]:
        raise ValueError("the recording has no sources")
    if recording.get("transforms"):
        names = ", ".join(str(t.get("name", "?")) if isinstance(t, dict) else str(t) for t in recording["transforms"])
        raise ValueError(f"the recording has transforms ({names}) that shardsmith does not apply; "
                         "write the transformed audio to files first")
    sources = recording["sources"]
    if isinstance(channel, list) and len(channel) == 1:
        channel = channel[0]
    if isinstance(channel, list):
        every = sorted(c for s in sources if isinstance(s, dict) for c in s.get("channels") or [])
        if sorted(channel) != every or len(sources) != 1:
            raise ValueError(f"channels {channel} at once; shardsmith reads one channel or a recording's only file")
        source, index = sources[0], None
    elif channel is None:
        if len(sources) != 1:
            raise ValueError(f"the recording spreads over {len(sources)} files; give cuts or supervisions that "
                             "pick a channel")
        source, index = sources[0], None
    else:
        holding = [s for s in sources if isinstance(s, dict) and channel in (s.get("channels") or [])]
        if not holding or isinstance(channel, bool) or not isinstance(channel, int):
            raise ValueError(f"channel {channel!r} is in none of the recording's sources")
        source = holding[0]
        # a source of one channel is that channel; else the channel's place in the file
        index = None if len(source["channels"]) == 1 else list(source["channels"]).index(channel)
    kind, path = source.get("type"), source.get("source")
    if kind != "file":
        template = _SOURCE_TYPES.get(str(kind))
        raise ValueError(template.format(source=str(path)[:200]) if template
                         else f"a {kind!r} source; shardsmith reads 'file' sources only")
    if not isinstance(path, str) or not path:
        raise ValueError("a 'file' source without a path")
    return join_location(parent_location(manifest), path), index  # beside the manifest


def _segment_item(record: _Record, recording: Any, recording_manifest: str,
                  supervision: Any) -> tuple[str, dict[str, Any]]:
    """The locator and labels of a cut or supervision record (ValueError: why not)."""
    data = record.data
    start_s, duration_s = _number(data.get("start")), _number(data.get("duration"))
    if start_s is None or duration_s is None or not (0 <= start_s < float("inf") and 0 < duration_s < float("inf")):
        raise ValueError(f"start {data.get('start')!r} and duration {data.get('duration')!r}: expected seconds, "
                         "start >= 0 and duration > 0")
    path, channel = _file_and_channel(recording, data.get("channel", 0), recording_manifest)
    labels = {k: supervision.get(k) for k in LABELS} if isinstance(supervision, dict) else {}
    return with_segment(path, Segment(start_s, duration_s, channel)), labels


def _cut(record: _Record, recordings: dict[str, _Record]) -> tuple[str, dict[str, Any]]:
    data = record.data
    if data["type"] not in MONO_CUT_TYPES:
        raise ValueError(f"a {data['type']} (shardsmith reads MonoCuts: one channel of one recording)")
    if "recording" not in data:
        raise ValueError("the cut has no recording (features only)")
    sups = data.get("supervisions") or [None]
    return _segment_item(record, data["recording"], record.manifest, sups[0])


def _supervision(record: _Record, recordings: dict[str, _Record]) -> tuple[str, dict[str, Any]]:
    rec = recordings.get(str(record.data.get("recording_id")))
    if rec is None:
        raise ValueError(f"its recording {record.data.get('recording_id')!r} is in none of the pool's recordings "
                         "manifests (add the recordings manifest to paths)")
    return _segment_item(record, rec.data, rec.manifest, record.data)


def _recording(record: _Record, recordings: dict[str, _Record]) -> tuple[str, dict[str, Any]]:
    path, _ = _file_and_channel(record.data, None, record.manifest)
    return path, {}


def list_lhotse_items(pool_name: str, pool: Any, base_dir: Path) -> Listing:
    """Every cut and supervision of the pool's manifests (or, with neither, every
    recording), as items (see the module docstring)."""
    rejects: list[dict[str, Any]] = []
    cuts: list[_Record] = []
    supervisions: list[_Record] = []
    recordings: dict[str, _Record] = {}
    for path in _manifests(pool_name, pool, base_dir):
        shown = path if is_uri(path) else Path(os.path.relpath(path, base_dir)).as_posix()
        for record in _records(pool_name, path, shown, rejects):
            if "type" in record.data:
                cuts.append(record)
            elif "sources" in record.data:
                first = recordings.setdefault(record.data["id"], record)
                if first is not record:
                    rejects.append({"pool": pool_name, "path": f"{shown}#line={record.line}",
                                    "reason": f"recording {record.data['id']!r} is listed twice ({first.shown} "
                                              f"line {first.line}); the first is kept"})
            else:
                supervisions.append(record)
    if cuts or supervisions:
        items = [(r, _cut) for r in cuts] + [(r, _supervision) for r in supervisions]
    else:
        items = [(r, _recording) for r in recordings.values()]

    ids: list[str] = []
    locators: list[str] = []
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for record, make in items:
        item = f"{record.shown}#{record.data['id']}"
        if item in seen:
            rejects.append({"pool": pool_name, "path": f"{record.shown}#line={record.line}",
                            "reason": f"{record.data['id']!r} is listed twice (lines {seen[item]} and "
                                      f"{record.line}); the first is kept"})
            continue
        seen[item] = record.line
        try:
            locator, labels = make(record, recordings)
        except ValueError as exc:
            rejects.append({"pool": pool_name, "path": item, "reason": str(exc)})
            continue
        except (TypeError, KeyError, AttributeError) as exc:  # a field of the wrong shape
            rejects.append({"pool": pool_name, "path": item,
                            "reason": f"not a Lhotse record of the expected shape ({type(exc).__name__}: {exc})"})
            continue
        ids.append(item)
        locators.append(locator)
        rows.append(labels)
    return Listing(ids, locators, label_table(rows, LABELS), rejects)
