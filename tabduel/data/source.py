"""Find the raw file: a path the user gives, or the spec's archive downloaded once and checked."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from tabduel.data.dataset import DatasetSpec
from tabduel.infra.errors import SourceError
from tabduel.infra.store import atomic_write_bytes, sha256_file

Progress = Callable[[str], None]


def resolve_source(source: str, spec: DatasetSpec, data_dir: str | Path,
                   progress: Progress = print, timeout: float = 60.0) -> Path:
    """Return the local raw file: source if given, else the verified download under data_dir/raw."""
    if source:
        path = Path(source)
        if not path.exists():
            raise SourceError(f"{path}: file not found (given as the source)")
        if not path.is_file():
            raise SourceError(f"{path}: not a file (given as the source)")
        return path
    if not spec.source.url:
        raise SourceError(f"the dataset spec {spec.path} gives no [source] url; pass the raw file with --source PATH")
    target = Path(data_dir) / "raw" / spec.source.member
    if target.is_file() and sha256_file(target) == spec.source.sha256:
        return target
    download(spec, target, progress, timeout)
    return target


def download(spec: DatasetSpec, target: Path, progress: Progress = print, timeout: float = 60.0) -> None:
    """Fetch the spec's URL, extract its member if it is a zip, check sha256, then write target."""
    url = spec.source.url
    progress(f"downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceError(f"cannot download {url} ({reason}); without network, "
                          f"pass a local copy of {spec.source.member} with --source PATH") from None
    data = extract_member(payload, spec.source.member, url)
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.source.sha256:
        raise SourceError(f"{url}: {spec.source.member} has sha256 {digest}, expected "
                          f"{spec.source.sha256}; refusing to use it (nothing was saved)")
    atomic_write_bytes(target, data)
    progress(f"saved {target} ({len(data)} bytes, sha256 verified)")


def extract_member(payload: bytes, member: str, url: str) -> bytes:
    """The named member of a zip archive, or the payload itself when it is not a zip."""
    if not zipfile.is_zipfile(io.BytesIO(payload)):
        return payload
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        names = {Path(n).name: n for n in archive.namelist()}
        if member not in names:
            raise SourceError(f"{url}: archive has no {member} (it holds {', '.join(sorted(names))})")
        return archive.read(names[member])
