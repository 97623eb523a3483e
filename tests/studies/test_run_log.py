"""RunLog: the experiments' log of finished runs, shared safely by several processes."""

import json
import threading
import time

import pytest

from burn_tf.studies import harness
from burn_tf.studies.harness import RunLog


def test_a_run_in_progress_elsewhere_is_waited_for_not_run_twice(tmp_path):
    # Two logs on one file stand for two processes: each flock goes through its own open
    # file description, so the threads exclude each other exactly as processes would.
    first, second = RunLog(tmp_path / "runs.jsonl", "row"), RunLog(tmp_path / "runs.jsonl", "row")
    started, release, calls, results = threading.Event(), threading.Event(), [], {}

    def slow_run():
        calls.append("first")
        started.set()
        release.wait(10)
        return {"knn_top1": 0.5}

    def other_run():
        calls.append("second")
        return {"knn_top1": 0.9}

    worker = threading.Thread(target=lambda: results.update(first=first.run("moco", "k1", slow_run)))
    worker.start()
    assert started.wait(10)
    waiter = threading.Thread(target=lambda: results.update(second=second.run("moco", "k1", other_run)))
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive(), "the second log must wait for the run in progress"
    release.set()
    worker.join(10)
    waiter.join(10)
    assert calls == ["first"]
    assert results["first"][1] is True and results["second"] == (results["first"][0], False)
    assert results["second"][0]["knn_top1"] == 0.5


def test_disjoint_runs_from_two_logs_all_reach_the_file(tmp_path):
    path = tmp_path / "runs.jsonl"
    a, b = RunLog(path, "variant"), RunLog(path, "variant")
    a.run("burn", "k1", lambda: {"knn_top1": 0.4})
    b.run("fs_only", "k2", lambda: {"knn_top1": 0.45})
    b.run("burn", "k1", lambda: pytest.fail("finished by the other log"))
    assembled = RunLog(path, "variant")
    assert {(name, record["config_key"]) for (name, _), record in assembled.done.items()} == {
        ("burn", "k1"), ("fs_only", "k2")}
    assert [json.loads(line)["variant"] for line in path.read_text().splitlines()] == ["burn", "fs_only"]


def test_a_damaged_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "runs.jsonl"
    RunLog(path, "row").run("npid", "k1", lambda: {"knn_top1": 0.3})
    with path.open("a") as f:
        f.write('{"row": "swav", "key": "k2", "knn_to')  # a run killed mid-write
    with pytest.raises(ValueError, match=r"runs\.jsonl: line 2 .*remove it"):
        RunLog(path, "row")


def test_a_record_names_the_commit_its_process_started_from(tmp_path, monkeypatch):
    assert harness.source_revision() == harness._REVISION_AT_IMPORT[0]
    # The checkout moving on while the process runs does not change what its records say.
    monkeypatch.setattr(harness, "_git_revision", lambda: "moved-on")
    log = RunLog(tmp_path / "runs.jsonl", "row")
    record, fresh = log.run("burn", "k1", lambda: {"knn_top1": 0.5})
    assert fresh and record["code"] == harness._REVISION_AT_IMPORT[0] != "moved-on"
    assert json.loads((tmp_path / "runs.jsonl").read_text())["code"] == record["code"]


def test_the_code_version_hashes_every_source_file(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    before = harness.code_tree_hash(package)
    (package / "sub" / "b.py").write_text("y = 3\n")  # one byte of one file
    changed = harness.code_tree_hash(package)
    (package / "sub" / "b.py").write_text("y = 2\n")
    assert changed != before == harness.code_tree_hash(package)
    (package / "sub" / "b.py").rename(package / "b.py")  # a moved file is other code
    assert harness.code_tree_hash(package) != before
    assert harness.code_version() == harness.code_tree_hash() == harness._CODE_AT_IMPORT[0]


def _log_as(path, version, monkeypatch):
    """A log written by a process that imported code ``version``."""
    monkeypatch.setattr(harness, "_CODE_AT_IMPORT", [version])
    return RunLog(path, "row")


def test_a_run_of_other_code_is_never_taken_for_this_codes(tmp_path, monkeypatch):
    path = tmp_path / "runs.jsonl"
    old = _log_as(path, "old-code", monkeypatch)
    record, _ = old.run("burn", "k1", lambda: {"knn_top1": 0.4, "weights_sha256": "aa"})
    assert record["code_version"] == "old-code" and record["key"] != "k1"  # the key hashes the code
    new = _log_as(path, "new-code", monkeypatch)
    assert new.lookup("burn", "k1") is None and new.other_versions() == {"old-code": 1}
    rerun, fresh = new.run("burn", "k1", lambda: {"knn_top1": 0.5, "weights_sha256": "aa"})
    assert fresh and rerun["code_version"] == "new-code" and new.other_versions() == {"old-code": 1}


def test_other_code_is_reused_only_after_a_bit_identical_rerun(tmp_path, monkeypatch):
    path = tmp_path / "runs.jsonl"
    old = _log_as(path, "old-code", monkeypatch)
    old.run("burn", "k1", lambda: {"knn_top1": 0.4, "weights_sha256": "aa"})
    old.run("byol", "k2", lambda: {"knn_top1": 0.6, "weights_sha256": "bb"})
    differing = _log_as(path, "new-code", monkeypatch)
    with pytest.raises(harness.CodeVersionError, match="'burn' of code version old-code is not bit-identical"):
        differing.accept_version("old-code", "burn", "k1", lambda: {"knn_top1": 0.4, "weights_sha256": "cc"})
    assert differing.lookup("byol", "k2") is None  # nothing of the old version counts
    identical = _log_as(tmp_path / "other.jsonl", "old-code", monkeypatch)
    identical.run("burn", "k1", lambda: {"knn_top1": 0.4, "weights_sha256": "aa"})
    identical.run("byol", "k2", lambda: {"knn_top1": 0.6, "weights_sha256": "bb"})
    identical = _log_as(tmp_path / "other.jsonl", "new-code", monkeypatch)
    proof = identical.accept_version("old-code", "burn", "k1", lambda: {"knn_top1": 0.4, "weights_sha256": "aa"})
    assert proof["identical"] and identical.versions == ["new-code", "old-code"]
    assert identical.lookup("byol", "k2")["knn_top1"] == 0.6  # reused without running
    with pytest.raises(harness.CodeVersionError, match="no run 'npid' of code version old-code"):
        _log_as(path, "new-code", monkeypatch).accept_version("old-code", "npid", "k9", dict)
