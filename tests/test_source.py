"""Downloads: a loopback HTTP server serves a generated archive; sha256 is checked before saving."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest

from rawdata import raw_rows, write_raw
from tabduel.data.dataset import builtin_spec_path, load_spec
from tabduel.data.source import resolve_source
from tabduel.infra.errors import SourceError


@pytest.fixture()
def archive_server(tmp_path):
    """Serve tmp_path/www over HTTP on 127.0.0.1; yields (base URL, request log)."""
    www = tmp_path / "www"
    www.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(www), **kwargs)

        def log_message(self, *args):
            hits.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", www, hits
    server.shutdown()
    server.server_close()


def make_spec(tmp_path: Path, url: str, sha256: str) -> Path:
    text = builtin_spec_path().read_text()
    text = text.replace("https://archive.ics.uci.edu/static/public/560/seoul+bike+sharing+demand.zip", url)
    text = text.replace(load_spec().source.sha256, sha256)
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def make_archive(www: Path, csv: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(csv, "SeoulBikeData.csv")
    (www / "archive.zip").write_bytes(buffer.getvalue())


def test_download_verifies_and_is_reused(tmp_path, archive_server):
    base, www, hits = archive_server
    csv = write_raw(tmp_path / "gen.csv", raw_rows(days=5))
    make_archive(www, csv)
    sha = hashlib.sha256(csv.read_bytes()).hexdigest()
    spec = load_spec(make_spec(tmp_path, f"{base}/archive.zip", sha))
    messages: list[str] = []
    path = resolve_source("", spec, tmp_path / "data", progress=messages.append)
    assert path == tmp_path / "data" / "raw" / "SeoulBikeData.csv"
    assert path.read_bytes() == csv.read_bytes()
    assert hits == ["/archive.zip"] and "sha256 verified" in messages[-1]
    assert resolve_source("", spec, tmp_path / "data", progress=messages.append) == path
    assert hits == ["/archive.zip"]  # the second call reused the verified file


def test_sha256_mismatch_saves_nothing(tmp_path, archive_server):
    base, www, _ = archive_server
    make_archive(www, write_raw(tmp_path / "gen.csv", raw_rows(days=5)))
    spec = load_spec(make_spec(tmp_path, f"{base}/archive.zip", "0" * 64))
    with pytest.raises(SourceError, match="has sha256 [0-9a-f]{64}, expected 0{64}; refusing to use it"):
        resolve_source("", spec, tmp_path / "data", progress=lambda m: None)
    assert not (tmp_path / "data" / "raw").exists() or not any((tmp_path / "data" / "raw").iterdir())


def test_archive_without_the_member(tmp_path, archive_server):
    base, www, _ = archive_server
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("other.csv", "a,b\n")
    (www / "archive.zip").write_bytes(buffer.getvalue())
    spec = load_spec(make_spec(tmp_path, f"{base}/archive.zip", "0" * 64))
    with pytest.raises(SourceError, match="archive has no SeoulBikeData.csv"):
        resolve_source("", spec, tmp_path / "data", progress=lambda m: None)


def test_no_network_points_to_source(tmp_path, archive_server):
    base, _, _ = archive_server
    spec = load_spec(make_spec(tmp_path, f"{base}/missing.zip", "0" * 64))
    with pytest.raises(SourceError, match="cannot download .*pass a local copy of SeoulBikeData.csv with --source"):
        resolve_source("", spec, tmp_path / "data", progress=lambda m: None)


def test_given_source_must_exist(tmp_path):
    with pytest.raises(SourceError, match="nope.csv: file not found"):
        resolve_source(str(tmp_path / "nope.csv"), load_spec(), tmp_path)


def test_given_source_must_be_a_file(tmp_path):
    with pytest.raises(SourceError, match=f"{tmp_path}: not a file"):
        resolve_source(str(tmp_path), load_spec(), tmp_path)
