"""Output locations: a local folder and an S3 prefix on a real S3-compatible server
(moto on 127.0.0.1) behave the same; a failed write leaves nothing behind."""

from __future__ import annotations

import pytest

from engine.errors import InputError, ShardError
from engine.storage import Store, is_uri
from engine.tables import read_table

from .conftest import make_bucket


@pytest.fixture(scope="module")
def bucket(s3_server) -> str:
    make_bucket("storage-tests")
    return "s3://storage-tests"


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, bucket) -> Store:
    if request.param == "local":
        return Store.open(tmp_path / "out")
    return Store.open(f"{bucket}/{tmp_path.name}")


def test_uris_and_paths_are_told_apart():
    assert is_uri("s3://b/p") and is_uri("gs://b/p")
    assert not is_uri("out/demo") and not is_uri("/abs/path") and not is_uri("file:///x")


@pytest.mark.parametrize("uri", ["gs://nonexistent-bucket/out", "hdfs://namenode/out", "http://127.0.0.1:9/out"])
def test_an_object_store_other_than_s3_is_refused_at_once_saying_what_is_supported(uri):
    # pyarrow's GCS client waited minutes for cloud metadata on a machine without network
    import time

    scheme = uri.split("://")[0]
    started = time.perf_counter()
    with pytest.raises(ShardError, match=rf"^{uri}: cannot open this location \({scheme}:// is not supported; "
                                         r"shardsmith reads and writes local paths and s3:// URIs.*AWS_ENDPOINT_URL"):
        Store.open(uri)
    with pytest.raises(InputError, match=rf"^{uri}/m.csv: cannot read manifest: {scheme}:// is not supported"):
        read_table(f"{uri}/m.csv")
    assert time.perf_counter() - started < 2


def test_a_store_in_a_message_shows_its_location_not_an_object(store):
    assert f"{store}: no run.json" == f"{store.display()}: no run.json"
    assert repr(store) == f"Store({store.display()!r})" and "object at 0x" not in f"{store!r}"


def test_a_written_file_reads_back_with_its_size_and_checksum(store):
    assert store.is_empty()
    store.write_bytes("train/a.bin", b"abc" * 1000)
    assert store.exists("train/a.bin") and not store.exists("train/b.bin")
    assert store.size("train/a.bin") == 3000
    assert store.read_bytes("train/a.bin") == b"abc" * 1000
    assert store.sha256("train/a.bin") == __import__("hashlib").sha256(b"abc" * 1000).hexdigest()
    assert store.list() == ["train/a.bin"] and not store.is_empty()


def test_a_write_that_fails_midway_leaves_no_file(store):
    with pytest.raises(RuntimeError):
        with store.open_output("train/half.bin") as f:
            f.write(b"partial")
            raise RuntimeError("worker died")
    assert store.list() == []


def test_delete_removes_only_the_named_file(store):
    store.write_bytes("a.txt", b"1")
    store.write_bytes("b.txt", b"2")
    assert store.delete("a.txt") and not store.delete("a.txt")
    assert store.list() == ["b.txt"]


def test_a_missing_file_is_a_clear_error(store):
    with pytest.raises(ShardError, match="nope.bin: cannot read"):
        store.read_bytes("nope.bin")


def test_a_folder_where_a_file_should_be_is_not_taken_for_that_file(store):
    """A local folder named like a shard has no shard size (as on S3, where the name is
    only a prefix), so a resume sees the shard as missing, not as damaged bytes."""
    store.write_bytes("train/x.arrow/inner.txt", b"12345")
    assert store.size("train/x.arrow") is None and not store.exists("train/x.arrow")
    assert store.sizes() == {"train/x.arrow/inner.txt": 5}
    assert store.list() == ["train/x.arrow/inner.txt"]
