"""What a run survives (issue 16): a second process on the same run folder or cache is refused,
naming the PID, and a killed one's lock never blocks; a full disk or a file-size limit stops a
run with one line, keeps the last good checkpoint and leaves no temporary file; a checkpoint that
does not fit names its first mismatch. The full disks are real (a small tmpfs, mounted where the
tests run as root on Linux; skipped elsewhere), as is the file-size limit (RLIMIT_FSIZE)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import pytest
from click.testing import CliRunner

import minialex
from minialex.checkpoint import WriteError, read_meta
from minialex.tools.cli import main
from minialex.data.cache import CacheDataset
from minialex.files import append_line
from minialex.train.stop_flag import Terminated, sigterm_interrupts

resource = pytest.importorskip("resource", reason="POSIX only: file locks, file-size limits")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(minialex.__file__)))
TINY = ["--preset", "tiny", "--train-images", "192", "--val-images", "64", "--batch-size", "32",
        "--no-progress"]
SMALL = ('preset="tiny", train_images=192, val_images=64, batch_size=32, progress=False')
ENV = dict(os.environ, PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE="1")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(output, *fragments):
    lines = [l for l in output.splitlines() if l.strip()]
    assert lines and lines[-1].startswith("error: "), output
    assert "Traceback" not in output and sum(l.startswith("error: ") for l in lines) == 1, output
    for f in fragments:
        assert f in lines[-1], lines[-1]
    return lines[-1]


def start(script: str) -> subprocess.Popen:
    """A Python process running ``script``; returns once it has printed its first line."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "ready", line + proc.stdout.read()
    return proc


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


# ------------------------------------------------------------------------------------------
# 1. One writer per run folder and per cache
# ------------------------------------------------------------------------------------------

def test_a_second_train_on_a_running_folder_is_refused_and_a_killed_runs_lock_never_blocks(
        tmp_path):
    out = tmp_path / "run"
    a = start(f"""
        import time
        from minialex.train import TrainConfig, train
        def on_step(step, loss):
            if step == 7:                       # epoch 2: last.h5 of epoch 1 is there
                print("ready", flush=True)
                time.sleep(300)
        train(TrainConfig(epochs=3, out={str(out)!r}, {SMALL}), echo=lambda s: None,
              on_step=on_step)
    """)
    try:
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        for args in (["--out", out, *TINY], ["--resume", out], ["--resume", out / "last.h5"]):
            result = cli("train", *args)
            assert result.exit_code == 1
            one_line_error(result.output, str(out), f"PID {a.pid}")
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before   # nothing touched
        (out / ".last.h5.x1y2z3.tmp").write_bytes(b"half a save")          # as kill -9 leaves
    finally:
        kill(a)
    assert (out / ".lock").exists()                     # left behind: it must not block
    result = cli("train", "--resume", out, "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert read_meta(out / "last.h5")["epoch"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["best.h5", "config.json", "last.h5",
                                                     "metrics.jsonl"]


def test_a_second_prepare_of_one_cache_is_refused(tmp_path):
    cache = tmp_path / "c.h5"
    a = start(f"""
        import time
        from minialex.tools.prepare import prepare_cache
        def echo(line):
            print("ready", flush=True)
            time.sleep(300)
        prepare_cache("builtin", {str(cache)!r}, base_size=16, limit=40, progress=False,
                      echo=echo)
    """)
    args = ["prepare", "builtin", "--out", cache, "--base-size", "16", "--limit", "40",
            "--no-progress"]
    try:
        result = cli(*args)
        assert result.exit_code == 1
        one_line_error(result.output, str(cache), f"PID {a.pid}")
    finally:
        kill(a)
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path)) == ["c.h5"]
    CacheDataset(str(cache)).close()


# ------------------------------------------------------------------------------------------
# 2. A full disk, a file-size limit
# ------------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """small_disk(bytes) -> a folder on a tmpfs of that size; skips where none can be mounted."""
    mounted = []

    def make(size: int):
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        if not (sys.platform.startswith("linux") and os.geteuid() == 0 and shutil.which("mount")):
            pytest.skip("a small tmpfs needs root on Linux")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture(scope="module")
def checkpoint_size(tmp_path_factory):
    """The bytes of one tiny training checkpoint, to size the disks below."""
    from minialex.train import TrainConfig, train
    out = tmp_path_factory.mktemp("size") / "run"
    train(TrainConfig(epochs=1, out=str(out), preset="tiny", train_images=192, val_images=64,
                      batch_size=32, progress=False), echo=lambda s: None)
    return os.path.getsize(out / "last.h5")


def train_process(out, epochs=3, limit=None):
    """``python -m minialex.tools.cli train`` in its own process (an HDF5 crash would kill pytest)."""
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run([sys.executable, "-m", "minialex.tools.cli", "train", "--out", str(out),
                           "--epochs", str(epochs), *TINY], env=ENV, capture_output=True,
                          text=True, timeout=300, preexec_fn=limit_file_size if limit else None)


def assert_kept(out, epoch):
    """The last good checkpoint is whole, no temporary file is left, the log has whole lines."""
    assert read_meta(out / "last.h5")["epoch"] == epoch
    minialex.load(str(out / "last.h5"))
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")], os.listdir(out)
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line)


def test_a_full_disk_at_a_checkpoint_stops_in_one_line_and_keeps_the_last_one(
        small_disk, checkpoint_size):
    out = small_disk(2 * checkpoint_size + checkpoint_size // 2 + 16384) / "run"  # 2 files fit
    done = train_process(out)
    assert done.returncode == 1, done.stdout + done.stderr               # not 139, not 0
    one_line_error(done.stdout + done.stderr, f"cannot write {out / 'last.h5'}: no space left",
                   "needed for the checkpoint", "free there", "last.h5 is left as it was",
                   f"--resume {out / 'last.h5'}")
    assert_kept(out, epoch=1)


def test_a_full_disk_at_the_copy_to_best_stops_in_one_line(small_disk, checkpoint_size):
    out = small_disk(checkpoint_size + checkpoint_size // 2 + 16384) / "run"   # one file fits
    done = train_process(out)
    assert done.returncode == 1, done.stdout + done.stderr
    one_line_error(done.stdout + done.stderr, f"cannot write {out / 'best.h5'}: no space left",
                   "needed for the copy of last.h5")
    assert_kept(out, epoch=1)
    assert not (out / "best.h5").exists()
    subprocess.run(["mount", "-o", "remount,size=2m", str(out.parent)], check=True)   # room
    from minialex.train.run_folder import inherit_best
    inherit_best(str(out), str(out))          # what --resume does first: the missing copy
    assert read_meta(out / "best.h5")["epoch"] == 1


def test_a_file_size_limit_stops_the_first_save_in_one_line(tmp_path, checkpoint_size):
    out = tmp_path / "run"
    done = train_process(out, limit=checkpoint_size // 2)
    assert done.returncode == 1, done.stdout + done.stderr
    one_line_error(done.stdout + done.stderr, f"cannot write {out / 'last.h5'}: file too large")
    assert sorted(os.listdir(out)) == ["config.json", "metrics.jsonl"]       # no .tmp, no .lock


def test_a_full_disk_never_leaves_half_a_line_in_the_log(small_disk):
    disk = small_disk(64 * 1024)
    log = disk / "metrics.jsonl"
    log.write_text('{"event": "step", "step": 0}\n')
    fd = os.open(disk / "ballast", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        os.close(fd)
    line = json.dumps({"event": "step", "loss": 2.302585, "padding": "x" * 150})
    with pytest.raises(WriteError) as err:
        for _ in range(100):             # the log's last block fills, then the disk says no
            append_line(str(log), line)
    assert str(err.value).startswith(f"cannot write {log}: no space left on device; ")
    assert "\n" not in str(err.value)
    assert log.read_text().endswith("\n")
    for text in log.read_text().splitlines():
        json.loads(text)


def test_a_full_disk_while_preparing_a_cache_stops_in_one_line_and_resumes(small_disk):
    disk = small_disk(512 * 1024)
    cache = disk / "c.h5"
    args = ["prepare", "builtin", "--out", str(cache), "--base-size", "38", "--limit", "40",
            "--no-progress"]
    # 80 images of 38x38 need 347 kB: the room check passes, then another program takes all but
    # 40 kB of the disk before the first image is written
    script = f"""
        import os, sys
        from minialex.tools import prepare
        checked = prepare._check_room
        def check_then_fill(*a):
            checked(*a)
            with open({str(disk / 'ballast')!r}, "wb") as fh:
                fh.write(b"\\0" * (os.statvfs({str(disk)!r}).f_bavail * 4096 - 40960))
        prepare._check_room = check_then_fill
        from minialex.tools.cli import main
        main({args!r})
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr              # not 139
    one_line_error(done.stdout + done.stderr, f"cannot write {cache}: no space left",
                   "run the same command again once there is room")
    os.remove(disk / "ballast")
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "(resumed)" in result.output
    data = CacheDataset(str(cache))
    assert len(data) == 40
    data.close()


# ------------------------------------------------------------------------------------------
# 3. A checkpoint that does not fit names what does not
# ------------------------------------------------------------------------------------------

def test_a_checkpoint_that_does_not_fit_names_the_first_mismatch(tmp_path):
    from minialex.train import TrainConfig, train
    out = tmp_path / "run"
    train(TrainConfig(epochs=1, out=str(out), preset="tiny", train_images=192, val_images=64,
                      batch_size=32, progress=False), echo=lambda s: None)
    bad = tmp_path / "x.h5"
    shutil.copy(out / "last.h5", bad)
    with h5py.File(bad, "r+") as f:
        weight = f["model/column0/conv1/weight"]
        shape = weight.shape
        half = weight[: shape[0] // 2]
        del f["model/column0/conv1/weight"]
        f["model/column0/conv1/weight"] = half                           # reshaped
        f.move("model/fc8/bias", "model/fc8/b")                           # renamed
    want = (f"{bad} does not fit AlexNet (preset tiny): column0/conv1/weight is "
            f"{(shape[0] // 2,) + shape[1:]} in the file, {shape} in the model; 2 more")
    assert one_line_error(cli("evaluate", bad).output) == f"error: {want}"
    line = one_line_error(cli("train", "--resume", bad, "--out", tmp_path / "branch").output)
    assert line == f"error: {want}"                                      # and no guessed cause


def test_resume_names_a_cause_only_when_it_knows_one(tmp_path):
    from test_data_sources import make_image_folder
    from minialex.train import TrainConfig, train
    folder = make_image_folder(tmp_path / "pets", per_class=8, bad=False)  # cat, dog, fish
    out = tmp_path / "run"
    train(TrainConfig(data=str(folder), epochs=1, out=str(out), preset="tiny", batch_size=8,
                      progress=False), echo=lambda s: None)
    shutil.copytree(os.path.join(folder, "train", "cat"), os.path.join(folder, "train", "cow"))
    shutil.copytree(os.path.join(folder, "val", "cat"), os.path.join(folder, "val", "cow"))
    line = one_line_error(cli("train", "--resume", out, "--epochs", "2").output)
    assert line.endswith("in the model; 1 more; the data now has 4 classes, the checkpoint 3"), line


class Dropped:
    """An object whose ``__del__`` sends this process SIGTERM, so that the handler runs inside
    it, where Python drops what the handler raises."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):            # the handler runs at one of these steps, inside __del__
            pass


def test_a_sigterm_lost_inside_a_del_is_sent_again(monkeypatch):
    """Python runs a signal's handler between two steps of the main thread, here inside a
    ``__del__``, where the ``Terminated`` it raises is printed as "Exception ignored" and
    dropped (h5py's weakref callbacks did this to ``prepare``: it ran on to its end with exit 0).
    ``sigterm_interrupts`` sends SIGTERM again until one lands where it unwinds."""
    lost = []                            # what Python would print as "Exception ignored"
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: lost.append(unraisable.exc_type))
    start = time.monotonic()
    with pytest.raises(Terminated):
        with sigterm_interrupts():
            Dropped()
            assert lost == [Terminated]      # the first one was dropped
            while time.monotonic() - start < 10:
                time.sleep(0.01)
    assert time.monotonic() - start < 5


def test_a_sigterm_lost_inside_a_del_prints_no_traceback(capsys, monkeypatch):
    """Python would report the dropped ``Terminated`` as "Exception ignored" with a traceback
    (what a flaky run of test_faults' SIGTERM test showed); the signal is sent again, so
    ``sigterm_interrupts`` leaves that report out and the job's one line is all a user sees."""
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)   # as outside pytest
    with pytest.raises(Terminated):
        with sigterm_interrupts():
            Dropped()
            while True:
                time.sleep(0.01)
    assert sys.unraisablehook is sys.__unraisablehook__
    err = capsys.readouterr().err
    assert "Exception ignored" not in err and "Traceback" not in err, err
