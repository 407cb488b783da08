"""``format: kaldi``: the items of Kaldi / ESPnet data dirs.

A data dir is a folder of small text files, one ``<key> <value>`` per line:

- ``wav.scp`` (required): ``<recording-id> <path>``. A relative path resolves against
  the recipe's folder: Kaldi and ESPnet write paths relative to the folder their scripts
  run in (the recipe root, ``egs/<corpus>/s5`` or ``egs2/<corpus>/asr1``), so a
  shardsmith recipe kept there reads them as written. An entry Kaldi would run or read
  specially (a piped command ``... |``, standard input ``-``, an offset into an archive
  ``x.ark:1234``, or anything with shell syntax) is refused with a reason and never run.
  A data dir may be on an object store (``s3://bucket/egs/s5/data/train``): its relative
  paths resolve against the folder Kaldi ran in there, the nearest of the data dir and
  the folders above it that holds them.
- ``segments`` (optional): ``<utt-id> <recording-id> <start> <end>`` in seconds (an end
  of ``-1`` is the recording's end). With it, items are these segments, read by seeking
  inside their recording; without it, items are the recordings.
- ``text`` (``<utt-id> <transcript>``), ``utt2spk`` (``<utt-id> <speaker>``) and
  ``spk2gender`` (``<speaker> <m|f>``): the labels ``text``, ``speaker``, ``gender``.

Item ids are ``<data dir relative to the recipe's folder>#<utt-id>``, for example
``data/train#utt7``. Nothing here reads audio: a missing file is found here, a segment
past its recording's end when the pool is probed.

Example::

    listing = list_kaldi_items("kaldi", recipe.pools["kaldi"], recipe.base_dir)
    listing.ids[0]   # 'data/train#spk1-utt1'
"""

from __future__ import annotations

import glob
import os
import posixpath
import re
from pathlib import Path
from typing import Any

from .errors import InputError, ShardError
from .sources import Listing, Segment, label_table, with_segment
from .storage import Store, glob_uri, is_uri, join_location

LABELS = ["text", "speaker", "gender"]
# What Kaldi's rxfilenames mean besides a file (kaldi-io.cc, ClassifyRxfilename), and
# characters a shell gives meaning to: such an entry is refused, never run.
_SHELL = re.compile(r"[|;&$`<>]")
_ARCHIVE_OFFSET = re.compile(r":\d+$")
# On an object store, the folder Kaldi ran in is found by looking for this many relative
# wav.scp entries below the data dir and each folder above it.
_RUN_FOLDER_PROBES = 5


class _DataDir:
    """A data dir, local (a folder) or on an object store (a prefix, listed once)."""

    def __init__(self, location: str):
        self.location = location  # an absolute local path or an object URI
        self.remote = is_uri(location)
        self._store = Store.open(location) if self.remote else None
        self._names = set(self._store.list()) if self._store is not None else None

    def file(self, name: str) -> str:
        return f"{self.location}/{name}" if self.remote else str(Path(self.location) / name)

    def has(self, name: str) -> bool:
        return name in self._names if self._names is not None else (Path(self.location) / name).is_file()


def _read_text(path: str) -> str:
    """A Kaldi table file's text, local or an object."""
    try:
        if is_uri(path):
            return Store.open(path).read_bytes("").decode("utf-8")
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}); Kaldi data dir files are UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except ShardError as exc:
        raise InputError(str(exc)) from None


def _read_map(path: str, rejects: list[dict[str, Any]], pool_name: str, shown: str,
              need_value: bool = True) -> dict[str, tuple[int, str]]:
    """``key -> (line number, rest of the line)`` of a Kaldi table file; a line without a
    value (when one is needed) or a key listed twice is rejected with its line number."""
    text = _read_text(path)
    out: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(None, 1)
        key, value = parts[0], (parts[1].strip() if len(parts) > 1 else "")
        if need_value and not value:
            rejects.append({"pool": pool_name, "path": f"{shown}#line={number}",
                            "reason": f"{key!r} has no value (expected '<key> <value>')"})
        elif key in out:
            rejects.append({"pool": pool_name, "path": f"{shown}#line={number}",
                            "reason": f"{key!r} is listed twice (lines {out[key][0]} and {number}); the first is kept"})
        else:
            out[key] = (number, value)
    return out


def refusal(entry: str) -> str | None:
    """Why a ``wav.scp`` entry is not a file shardsmith reads, or None if it is one.

    Example: ``refusal("sox a.wav -t wav - |")  # 'a piped command (...|); ...'``
    """
    never = "shardsmith never runs a shell: convert the audio to files first"
    if entry.endswith("|") or entry.startswith("|"):
        return f"a piped command ({entry!r}); {never}"
    if entry == "-":
        return "standard input ('-'); name an audio file"
    if _ARCHIVE_OFFSET.search(entry):
        return (f"an offset into a Kaldi archive ({entry!r}); shardsmith reads audio files: "
                "convert the audio to files first")
    if _SHELL.search(entry):
        return f"shell syntax ({entry!r}); {never}"
    return None


def _remote_data_dirs(where: str, pattern: str) -> list[str]:
    """The data dirs on an object store that a ``paths`` entry names (a prefix holding
    wav.scp, the wav.scp itself, or a glob of either)."""
    if any(c in pattern for c in "*?["):
        target = pattern if pattern.endswith("/wav.scp") else pattern.rstrip("/") + "/wav.scp"
        found = [m.rsplit("/", 1)[0] for m in glob_uri(target)]
        if not found:
            raise InputError(f"{where}: {pattern!r} matches no data dir (looked for {target}); name a Kaldi data "
                             "dir, e.g. s3://bucket/data/train")
        return found
    d = pattern.rstrip("/")
    if d.endswith("/wav.scp") and Store.open(d).exists(""):
        return [d.rsplit("/", 1)[0]]
    if not Store.open(d).exists("wav.scp"):
        raise InputError(f"{where}: {d} holds no wav.scp; a Kaldi data dir holds wav.scp ('<recording-id> <path>' "
                         "per line, and optionally segments, text, utt2spk, spk2gender): point paths at it")
    return [d]


def _data_dirs(pool_name: str, pool: Any, base_dir: Path) -> list[str]:
    """The data dirs the pool's ``paths`` name (folders, globs of folders, or their
    wav.scp): absolute local paths or object URIs."""
    found: dict[str, None] = {}
    for i, pattern in enumerate(pool.paths):
        where = f"pools.{pool_name}.paths[{i}]"
        if is_uri(pattern):
            found.update(dict.fromkeys(_remote_data_dirs(where, pattern)))
            continue
        full = pattern if os.path.isabs(pattern) else str(base_dir / pattern)
        matches = sorted(Path(os.path.abspath(m)) for m in glob.glob(full, recursive=True))
        if not matches:
            raise InputError(f"{where}: {pattern!r} matches no folder (looked for {full}); name a Kaldi data dir, "
                             "e.g. data/train")
        for m in matches:
            d = m.parent if m.name == "wav.scp" and m.is_file() else m
            if not (d / "wav.scp").is_file():
                what = "a folder without wav.scp" if d.is_dir() else "not a folder"
                raise InputError(f"{where}: {d} is {what}; a Kaldi data dir holds wav.scp ('<recording-id> <path>' "
                                 "per line, and optionally segments, text, utt2spk, spk2gender): point paths at it")
            found[str(d)] = None
    return list(found)


def _run_folder(data_dir: str, entries: list[str]) -> tuple[str, set[str] | None]:
    """On an object store: the folder Kaldi ran in, the nearest of the data dir and the
    folders above it below which a relative wav.scp entry is found (the data dir's
    grandparent when none is), and the objects below the entries' common folder there
    (one listing; None if it cannot be listed)."""
    scheme, rest = data_dir.split("://", 1)
    parts = rest.split("/")
    ancestors = [f"{scheme}://{'/'.join(parts[:n])}" for n in range(len(parts), 0, -1)]
    relative = [e for e in entries if not ("://" in e or os.path.isabs(e))]
    run = ancestors[min(2, len(ancestors) - 1)]
    for entry in relative[:_RUN_FOLDER_PROBES]:
        hit = next((a for a in ancestors if Store.open(a).exists(posixpath.normpath(entry))), None)
        if hit is not None:
            run = hit
            break
    keys = [posixpath.normpath(e) for e in relative]
    if not keys or any(k == ".." or k.startswith("../") for k in keys):
        return run, None  # nothing to check, or files above the run folder: found when probed
    common = posixpath.commonpath([posixpath.dirname(k) for k in keys])
    prefix = "" if common in ("", ".") else common
    try:
        names = Store.open(run).list(prefix)
    except ShardError:
        return run, None
    return run, set(names)


def _recordings(pool_name: str, data_dir: _DataDir, rel: str, base_dir: Path,
                rejects: list[dict[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
    """``wav.scp`` as ``(recording id -> file, recording id -> why it is refused)``."""
    usable: dict[str, str] = {}
    refused: dict[str, str] = {}
    entries = _read_map(data_dir.file("wav.scp"), rejects, pool_name, f"{rel}/wav.scp")
    run, objects = (_run_folder(data_dir.location, [e for _, e in entries.values() if refusal(e) is None])
                    if data_dir.remote else ("", None))
    for rec, (_, entry) in entries.items():
        why = refusal(entry)
        if why is None and data_dir.remote and not ("://" in entry or os.path.isabs(entry)):
            key = posixpath.normpath(entry)
            path = join_location(run, key)
            if objects is not None and key not in objects:
                why = (f"file not found: {path} (on an object store a relative path in wav.scp resolves against "
                       f"the folder Kaldi ran in, found as the nearest of the data dir and the folders above it "
                       f"that holds the files wav.scp names: here {run})")
        else:
            path = join_location(str(base_dir), entry) if why is None else ""
        if why is None and "://" not in path and not os.path.isfile(path):
            why = (f"file not found: {path} (a relative path in wav.scp resolves against the recipe's folder, "
                   f"{base_dir}: keep the recipe in the folder Kaldi ran in, or write absolute paths)")
        if why is None:
            usable[rec] = path
        else:
            refused[rec] = why
            rejects.append({"pool": pool_name, "path": f"{rel}/wav.scp#{rec}", "reason": why})
    return usable, refused


def _utterances(pool_name: str, data_dir: _DataDir, rel: str, recordings: list[str],
                rejects: list[dict[str, Any]]) -> list[tuple[str, str, Segment | None]]:
    """``(utt-id, recording id, segment)`` of every utterance: the lines of ``segments``,
    or, without it, every recording whole."""
    if not data_dir.has("segments"):
        return [(rec, rec, None) for rec in recordings]
    out = []
    for utt, (number, value) in _read_map(data_dir.file("segments"), rejects, pool_name, f"{rel}/segments").items():
        fields = value.split()
        try:
            if len(fields) != 3:
                raise ValueError
            rec, start_s, end_s = fields[0], float(fields[1]), float(fields[2])
        except ValueError:
            rejects.append({"pool": pool_name, "path": f"{rel}/segments#line={number}",
                            "reason": f"expected '<utt-id> <recording-id> <start> <end>', got {utt} {value!r}"})
            continue
        if not (0 <= start_s < float("inf") and (start_s < end_s < float("inf") or end_s == -1)):
            rejects.append({"pool": pool_name, "path": f"{rel}#{utt}",
                            "reason": f"segment {start_s:g}..{end_s:g} s: the start must be >= 0 and the end after "
                                      "it (or -1 for the recording's end)"})
            continue
        out.append((utt, rec, Segment(start_s, None if end_s == -1 else end_s - start_s)))
    return out


def list_kaldi_items(pool_name: str, pool: Any, base_dir: Path) -> Listing:
    """Every utterance (or, without ``segments``, every recording) of the pool's data
    dirs, as items (see the module docstring)."""
    ids: list[str] = []
    locators: list[str] = []
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for location in _data_dirs(pool_name, pool, base_dir):
        data_dir = _DataDir(location)
        rel = location if data_dir.remote else Path(os.path.relpath(location, base_dir)).as_posix()
        usable, refused = _recordings(pool_name, data_dir, rel, base_dir, rejects)
        labels = {}
        for name in ("text", "utt2spk", "spk2gender"):
            labels[name] = {} if not data_dir.has(name) else {
                k: v for k, (_, v) in _read_map(data_dir.file(name), rejects, pool_name, f"{rel}/{name}",
                                                need_value=name != "text").items()}
        for utt, rec, segment in _utterances(pool_name, data_dir, rel, [*usable, *refused], rejects):
            if rec not in usable:
                if segment is not None:  # without segments, the wav.scp entry is the reject
                    reason = (f"its recording {rec!r} is not usable (see {rel}/wav.scp#{rec})" if rec in refused
                              else f"its recording {rec!r} is not in {rel}/wav.scp")
                    rejects.append({"pool": pool_name, "path": f"{rel}#{utt}", "reason": reason})
                continue
            ids.append(f"{rel}#{utt}")
            locators.append(usable[rec] if segment is None else with_segment(usable[rec], segment))
            speaker = labels["utt2spk"].get(utt)
            rows.append({"text": labels["text"].get(utt), "speaker": speaker,
                         "gender": labels["spk2gender"].get(speaker) if speaker is not None else None})
    return Listing(ids, locators, label_table(rows, LABELS), rejects)
