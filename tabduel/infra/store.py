"""Content-addressed step outputs: keys, atomic writes and 'latest' pointers."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from tabduel.infra.errors import TabduelError

DONE = "_done.json"


@dataclass(frozen=True)
class StepResult:
    """What a step hands to the next: where its output lies and whether it was reused."""

    step: str
    path: str
    key: str
    reused: bool
    run_id: str = ""
    dataset: str = ""  # the dataset spec's name: the 'latest' pointers are kept per dataset


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(path: str | Path) -> str:
    """sha256 over the relative names and bytes of every file under a directory."""
    root = Path(path)
    h = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(file.relative_to(root).as_posix().encode() + b"\0")
        h.update(sha256_file(file).encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def package_version(name: str) -> str:
    """An installed distribution's version (cached: importlib.metadata scans every installed package)."""
    return importlib.metadata.version(name)


def code_fingerprint(modules: Sequence[str], packages: Sequence[str] = ()) -> str:
    """sha256 of the source files of modules (read now, not imported) plus the versions of third-party packages."""
    h = hashlib.sha256()
    for name in sorted(modules):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            raise ModuleNotFoundError(f"no source for module {name!r}")
        h.update(name.encode() + b"\0" + Path(spec.origin).read_bytes())
    for pkg in sorted(packages):
        h.update(f"{pkg}=={package_version(pkg)}".encode())
    return h.hexdigest()


def step_key(step: str, inputs: Mapping[str, str], config: Mapping[str, Any], code: str) -> str:
    """Short hex key that changes with any input hash, setting or code fingerprint."""
    payload = json.dumps({"step": step, "inputs": dict(inputs), "config": config, "code": code},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on path (created if missing, left in place) for the block; other processes wait."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):  # flock on Unix; the file's mode follows the umask, like the step outputs
        yield


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file through a temp file and os.replace, so readers never see half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; final files follow the umask
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Atomically write pretty JSON."""
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def output_dir(data_dir: str | Path, step: str, key: str) -> Path:
    """Final directory of a step output with this key (absolute: it is recorded in metadata)."""
    return Path(data_dir).resolve() / step / key


def is_done(path: str | Path) -> bool:
    """True when a step output directory was completed."""
    return (Path(path) / DONE).is_file()


def materialize(data_dir: str | Path, step: str, key: str, force: bool,
                build: Callable[[Path], Mapping[str, Any]]) -> tuple[Path, bool]:
    """Reuse the done output for key, or build it in a temp dir and rename it into place.

    build(tmp) writes files into tmp and returns metadata for the done marker. If it raises,
    nothing appears at the final path and an earlier output there stays as it was.
    """
    final = output_dir(data_dir, step, key)
    if is_done(final) and not force:
        return final, True
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; outputs follow the umask
    old = final.parent / f".{final.name}.old.{os.getpid()}"
    try:
        meta = dict(build(tmp))
        atomic_write_json(tmp / DONE, {"step": step, "key": key, **meta})
        # Two runs may build the same key at once (two pipelines on one data dir): the check and the
        # renames are one step under the step's lock, so a run never renames onto or swaps out the other's output.
        with file_lock(final.parent / ".lock"):
            if is_done(final) and not force:  # a concurrent run finished the same key first: its output is the same
                return final, True
            if final.exists():  # --force, or a leftover without a done marker: swap, then drop the old one
                os.replace(final, old)
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return final, False


def latest_pointer(data_dir: str | Path, step: str, dataset: str) -> Path:
    """<data_dir>/<step>/latest/<dataset>.json: one pointer per dataset, so datasets in one data dir never mix."""
    return Path(data_dir) / step / "latest" / f"{dataset}.json"


def publish(data_dir: str | Path, step: str, result: StepResult) -> StepResult:
    """Point <data_dir>/<step>/latest/<dataset>.json at this output (for steps run on their own); return it."""
    if not result.dataset:
        raise ValueError(f"a {step} result needs its dataset's name to be published")
    atomic_write_json(latest_pointer(data_dir, step, result.dataset),
                      {"path": str(Path(result.path).resolve()), "key": result.key, "run_id": result.run_id,
                       "dataset": result.dataset})
    return result


def published_since(data_dir: str | Path, dataset: str, since: float) -> list[tuple[str, str]]:
    """(step, path) of each output of dataset published (pointed at by its latest pointer) at or after `since`
    (time.time()), oldest first: what a run kept."""
    found = []
    for pointer in Path(data_dir).glob(f"**/latest/{dataset}.json"):
        try:
            when = pointer.stat().st_mtime
            if when >= since:
                step = pointer.parent.parent.relative_to(data_dir).as_posix()
                found.append((when, step, read_json(pointer)["path"]))
        except (OSError, ValueError, KeyError):  # a pointer being replaced right now: not kept by this run
            continue
    return [(step, path) for _, step, path in sorted(found)]


def read_latest(data_dir: str | Path, step: str, dataset: str, hint: str) -> StepResult:
    """The latest completed output of a step for this dataset, or a TabduelError telling what to run."""
    pointer = latest_pointer(data_dir, step, dataset)
    if not pointer.is_file():
        others = sorted(p.stem for p in pointer.parent.glob("*.json"))
        elsewhere = (f" (there are outputs of dataset(s) {', '.join(others)}: pass their spec with --dataset)"
                     if others else "")
        raise TabduelError(f"no {step} output of dataset {dataset!r} under {Path(data_dir) / step}; run `{hint}` "
                           f"first{elsewhere}")
    data = read_json(pointer)
    if not is_done(data["path"]):
        raise TabduelError(f"{pointer} points at {data['path']}, which is missing or incomplete; run `{hint}`")
    return StepResult(step=step, path=data["path"], key=data["key"], reused=True, run_id=data.get("run_id", ""),
                      dataset=dataset)
