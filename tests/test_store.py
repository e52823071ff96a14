"""Content-addressed outputs: keys, code fingerprints, atomic materialization."""

from __future__ import annotations

import importlib
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tabduel.infra.errors import TabduelError
from tabduel.infra.store import (
    StepResult,
    code_fingerprint,
    file_lock,
    is_done,
    materialize,
    publish,
    read_latest,
    sha256_tree,
    step_key,
)


def test_step_key_changes_with_inputs_config_and_code():
    base = step_key("s", {"in": "a"}, {"x": 1}, "code")
    assert step_key("s", {"in": "a"}, {"x": 1}, "code") == base
    assert step_key("s", {"in": "b"}, {"x": 1}, "code") != base
    assert step_key("s", {"in": "a"}, {"x": 2}, "code") != base
    assert step_key("s", {"in": "a"}, {"x": 1}, "code2") != base


def test_code_fingerprint_follows_the_module_source(tmp_path, monkeypatch):
    (tmp_path / "fp_probe.py").write_text("def f():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    first = code_fingerprint(["fp_probe"])
    (tmp_path / "fp_probe.py").write_text("def f():\n    return 2\n")
    assert code_fingerprint(["fp_probe"]) != first
    assert code_fingerprint(["fp_probe"], ["numpy"]) != code_fingerprint(["fp_probe"])
    sys.modules.pop("fp_probe", None)


def test_tree_hash_sees_a_changed_byte(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    first = sha256_tree(tmp_path)
    (tmp_path / "a.bin").write_bytes(b"abd")
    assert sha256_tree(tmp_path) != first


def test_materialize_builds_once_then_reuses(tmp_path):
    calls = []

    def build(tmp):
        calls.append(tmp)
        (tmp / "out.txt").write_text("x")
        return {"n": 1}

    path, reused = materialize(tmp_path, "step", "k1", False, build)
    assert not reused and (path / "out.txt").read_text() == "x" and is_done(path)
    path2, reused2 = materialize(tmp_path, "step", "k1", False, build)
    assert reused2 and path2 == path and len(calls) == 1
    _, reused3 = materialize(tmp_path, "step", "k1", True, build)
    assert not reused3 and len(calls) == 2


def test_failed_build_leaves_nothing_and_keeps_the_old_output(tmp_path):
    def good(tmp):
        (tmp / "out.txt").write_text("good")
        return {}

    def bad(tmp):
        (tmp / "out.txt").write_text("half")
        raise RuntimeError("boom")

    path, _ = materialize(tmp_path, "step", "k1", False, good)
    with pytest.raises(RuntimeError):
        materialize(tmp_path, "step", "k1", True, bad)  # --force, then a failure
    assert (path / "out.txt").read_text() == "good" and is_done(path)
    with pytest.raises(RuntimeError):
        materialize(tmp_path, "step", "k2", False, bad)
    assert not (tmp_path / "step" / "k2").exists()
    assert sorted(p.name for p in (tmp_path / "step").iterdir()) == [".lock", "k1"]  # no temp dir is left


def test_concurrent_builds_of_one_key_publish_one_output(tmp_path):
    """Builds of one key that finish together (two pipelines on one data dir) all succeed: one publishes, the
    others reuse its output, and no temp dir is left."""
    n = 6
    barrier = threading.Barrier(n)

    def build(tmp):
        (tmp / "out.txt").write_text(threading.current_thread().name)
        barrier.wait()  # every build finishes at the same moment, then all race to publish
        return {}

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda _: materialize(tmp_path, "step", "k", False, build), range(n)))
    assert {path for path, _ in results} == {tmp_path.resolve() / "step" / "k"}
    assert sorted(reused for _, reused in results) == [False] + [True] * (n - 1)
    assert is_done(tmp_path / "step" / "k")
    assert sorted(p.name for p in (tmp_path / "step").iterdir()) == [".lock", "k"]


HOLD = """
import os, sys, time
from tabduel.infra.store import file_lock
os.umask(0o002)
with file_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(1.0)
    print(time.time(), flush=True)  # the moment it lets go
"""


def test_file_lock_makes_another_process_wait_and_stays_in_place(tmp_path):
    """A lock another process holds makes this one wait until it lets go; the lock file stays, its mode from the
    creating process' umask (0o002 there: group-writable, so a group shares a data dir)."""
    lock = tmp_path / "step" / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with file_lock(lock):
            acquired = time.time()
        released = float(holder.stdout.readline())
    finally:
        holder.wait(timeout=30)
    assert acquired >= released and holder.returncode == 0
    assert lock.is_file() and stat.S_IMODE(lock.stat().st_mode) == 0o664


def test_latest_pointer_per_dataset(tmp_path):
    with pytest.raises(TabduelError, match="run `tabduel ingest` first$"):
        read_latest(tmp_path, "ingest", "a", "tabduel ingest")
    path_a, _ = materialize(tmp_path, "ingest", "ka", False, lambda tmp: {})
    path_b, _ = materialize(tmp_path, "ingest", "kb", False, lambda tmp: {})
    publish(tmp_path, "ingest", StepResult("ingest", str(path_a), "ka", False, dataset="a"))
    publish(tmp_path, "ingest", StepResult("ingest", str(path_b), "kb", False, dataset="b"))  # b after a
    latest_a = read_latest(tmp_path, "ingest", "a", "tabduel ingest")
    assert (latest_a.key, latest_a.dataset) == ("ka", "a")
    assert read_latest(tmp_path, "ingest", "b", "tabduel ingest").key == "kb"
    with pytest.raises(TabduelError, match=r"no ingest output of dataset 'c' .*outputs of dataset\(s\) a, b"):
        read_latest(tmp_path, "ingest", "c", "tabduel ingest")
    with pytest.raises(ValueError, match="needs its dataset"):
        publish(tmp_path, "ingest", StepResult("ingest", str(path_a), "ka", False))
