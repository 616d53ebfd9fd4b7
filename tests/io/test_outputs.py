"""Outputs never replace inputs, a folder of outputs is swapped in whole, and one process writes a folder."""

from __future__ import annotations

import os
import signal

import pytest

from metavoxel.errors import InputError
from metavoxel.io.lock import LOCK_FILE, FolderLocked, writer_lock
from metavoxel.io.outputs import check_outputs
from metavoxel.io.staging import check_replaceable, staged_folder


@pytest.fixture
def table(tmp_path):
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "t20.tsv"
    path.write_text("participant_id\tage\nsub-1\t70\n")
    return path


def _refused(reads, files=(), folders=()) -> str:
    with pytest.raises(InputError) as err:
        check_outputs(reads, files=files, folders=folders)
    return str(err.value)


def test_an_output_file_that_is_an_input_is_refused_however_it_is_named(table, tmp_path, monkeypatch):
    reads = [("--data", table)]
    message = _refused(reads, files=[("--out", table)])
    assert message.startswith(f"--out '{table}' is the file --data reads") and "choose another --out" in message
    monkeypatch.chdir(tmp_path / "data")
    _refused(reads, files=[("--out", "t20.tsv")])  # relative
    _refused(reads, files=[("--out", "../data/./t20.tsv")])  # not normalised
    (tmp_path / "link.tsv").symlink_to(table)
    _refused(reads, files=[("--out", tmp_path / "link.tsv")])  # a symlink to the input
    _refused([("--data", tmp_path / "link.tsv")], files=[("--out", table)])  # the input given through a symlink
    os.link(table, tmp_path / "hard.tsv")
    _refused(reads, files=[("--out", tmp_path / "hard.tsv")])  # a hard link: the same file under another name
    check_outputs(reads, files=[("--out", tmp_path / "predictions.tsv"), ("--out", tmp_path / "data")])
    check_outputs([("--data", None)], files=[("--out", table)])  # an input that is not given


def test_a_folder_replaced_whole_may_not_hold_an_input(table, tmp_path):
    message = _refused([("--fix image", table)], folders=[("--out", tmp_path / "data")])
    assert message == (f"--out '{tmp_path / 'data'}' holds --fix image '{table}', and this command replaces that "
                       "folder as a whole: choose another --out (a new folder) or move the input out of it")
    _refused([("--model (spec.json)", table)], folders=[("--out", tmp_path)])  # an ancestor
    _refused([("--data", tmp_path / "data")], folders=[("--out", tmp_path / "data")])  # the input folder itself
    (tmp_path / "samples").symlink_to(tmp_path / "data")
    _refused([("--fix image", table)], folders=[("--out", tmp_path / "samples")])  # through a symlinked folder
    check_outputs([("--fix image", table)], folders=[("--out", tmp_path / "data-out"), ("--out", tmp_path / "dat")])


def test_only_a_new_empty_or_earlier_output_folder_may_be_replaced(tmp_path):
    owned = ("preview.png", "*_sample[0-9]*.nii.gz")
    check_replaceable(tmp_path / "new", marker="samples.json", command="metavoxel sample", owned=owned)
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", marker="samples.json", command="metavoxel sample", owned=owned)
    (tmp_path / "file").write_text("mine")
    with pytest.raises(InputError, match="--out '.*file' is a file; metavoxel sample writes a folder"):
        check_replaceable(tmp_path / "file", marker="samples.json", command="metavoxel sample", owned=owned)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "scan.nii.gz").write_text("")
    with pytest.raises(InputError, match="is a folder that metavoxel sample did not write .it has no samples.json"):
        check_replaceable(mine, marker="samples.json", command="metavoxel sample", owned=owned)
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    for name in ("samples.json", "preview.png", "image_sample00.nii.gz", "image_sample01.nii.gz"):
        (earlier / name).write_text("")
    check_replaceable(earlier, marker="samples.json", command="metavoxel sample", owned=owned)
    (earlier / "notes.txt").write_text("kept by the user")
    with pytest.raises(InputError, match="holds 'notes.txt', which metavoxel sample does not write"):
        check_replaceable(earlier, marker="samples.json", command="metavoxel sample", owned=owned)


def test_a_staged_folder_is_the_new_output_whole_or_leaves_the_old_one(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "samples.json").write_text("age 70")
    (out / "image_sample07.nii.gz").write_text("of the earlier run")
    with pytest.raises(KeyboardInterrupt), staged_folder(out) as staging:
        (staging / "samples.json").write_text("age 90")
        raise KeyboardInterrupt  # Ctrl-C while writing
    assert sorted(p.name for p in out.iterdir()) == ["image_sample07.nii.gz", "samples.json"]
    assert (out / "samples.json").read_text() == "age 70"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no staging folder left
    with staged_folder(out) as staging:
        (staging / "samples.json").write_text("age 90")
    assert [p.name for p in out.iterdir()] == ["samples.json"]  # the earlier run's sample 07 went with it
    assert (out / "samples.json").read_text() == "age 90" and sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_one_writer_per_folder_and_a_killed_writer_leaves_no_lock(tmp_path):
    run = tmp_path / "run"
    with writer_lock(run, what="the run directory 'run'"):
        with pytest.raises(FolderLocked, match=rf"the run directory 'run' is being written by another metavoxel "
                                               rf"process \(pid {os.getpid()}\); wait for it"):
            with writer_lock(run, what="the run directory 'run'"):
                pass
    with writer_lock(run, what="run"):  # released when the block ends
        pass
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child takes the lock and is killed while holding it
        try:
            with writer_lock(run, what="run"):
                os.write(write, b"x")
                signal.pause()
        finally:
            os._exit(0)
    os.read(read, 1)
    with pytest.raises(FolderLocked, match=f"pid {child}"):
        with writer_lock(run, what="run"):
            pass
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    with writer_lock(run, what="run") as lock:  # the kernel released the dead process's lock
        assert lock == run / LOCK_FILE


def test_a_staged_folder_behind_a_symlink_is_written_where_it_points(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "samples.json").write_text("old")
    (tmp_path / "o").symlink_to(tmp_path / "real")
    with staged_folder(tmp_path / "o") as staging:
        (staging / "samples.json").write_text("new")
    assert (tmp_path / "o").is_symlink() and (tmp_path / "real" / "samples.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "real"]
