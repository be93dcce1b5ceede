"""The shared server fixtures in tests/conftest.py work."""

import io

import pytest
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.services


def test_s3_server_roundtrip(s3_server):
    bucket = s3_server.make_bucket()
    client = s3_server.client()
    client.put_object(bucket, "a/b.txt", io.BytesIO(b"hello"), 5)
    assert client.get_object(bucket, "a/b.txt").read() == b"hello"


def test_postgres_schema_is_private(postgres_url):
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x int)"))
        assert conn.execute(text("SELECT current_schema()")).scalar().startswith("t_")
    engine.dispose()


def test_redis_namespace(redis_ns):
    client = redis_ns.client()
    client.set(redis_ns.prefix + "k", b"v")
    assert client.get(redis_ns.prefix + "k") == b"v"
