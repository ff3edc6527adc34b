"""HDF5 checkpoints: bit-exact round trips, the documented layout, clear errors, atomic writes."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy
import pytest

import minialex
import minialex.functional as F
from minialex import checkpoint
from minialex.checkpoint import CheckpointError
from minialex.models import AlexNet, OneColumnAlexNet
from minialex.optim import SGD

TWO_CPUS = ("cpu:0", "cpu:1")


def trained_tiny(seed=0, num_classes=5):
    """A tiny model and its optimizer after one SGD step (so the momentum is not zero)."""
    model = AlexNet(num_classes, "tiny", devices=TWO_CPUS, seed=seed)
    opt = SGD(model.named_parameters(), lr=0.05)
    x = numpy.random.default_rng(seed).standard_normal((4, 3, 33, 33)).astype(numpy.float32)
    F.cross_entropy(model(x), numpy.arange(4) % num_classes).backward()
    opt.step()
    return model, opt


def params_of(model):
    return {name: p.numpy().copy() for name, p in model.named_parameters()}


def test_round_trip_is_bit_exact_with_optimizer_meta_and_extra(tmp_path):
    model, opt = trained_tiny()
    rng = numpy.random.default_rng(7)
    rng.random(3)
    extra = {"rng": {"dropout_generators.0": json.dumps(rng.bit_generator.state)},
             "metrics": {"train_loss": [2.3, 1.9, 1.5], "best": None, "epoch": 3},
             "data": {"mean": numpy.arange(12.0).reshape(2, 2, 3),
                      "classes": numpy.array([b"cat", b"dog"]), "spec": "builtin", "base_size": 76}}
    path = tmp_path / "run" / "last.h5"
    minialex.save(path, model, optimizer=opt, extra=extra, epoch=3, step=120, note="hello")

    other, other_opt = trained_tiny(seed=9)
    assert minialex.load(path, model=other, optimizer=other_opt) is other
    for name, value in params_of(model).items():
        got = params_of(other)[name]
        assert got.dtype == value.dtype and numpy.array_equal(got, value), name
        assert other_opt.state_dict()["velocity"][name].tobytes() == \
            opt.state_dict()["velocity"][name].tobytes(), name
    assert other_opt.steps == opt.steps == 1 and other_opt.lr == 0.05
    # parameters stay on their devices
    assert other.column1.conv3.weight.device == minialex.Device("cpu:1")

    meta = checkpoint.read_meta(path)
    assert (meta["epoch"], meta["step"], meta["note"], meta["preset"]) == (3, 120, "hello", "tiny")
    assert meta["format_version"] == 1 and meta["created_by"].startswith("minialex")
    assert meta["config"] == model.config
    back = checkpoint.read_extra(path)
    assert back["metrics"] == {"train_loss": [2.3, 1.9, 1.5], "best": None, "epoch": 3}
    assert numpy.array_equal(back["data"]["mean"], extra["data"]["mean"])
    assert list(back["data"]["classes"]) == [b"cat", b"dog"]
    assert back["data"]["spec"] == "builtin" and back["data"]["base_size"] == 76
    restored = numpy.random.default_rng(0)
    restored.bit_generator.state = json.loads(back["rng"]["dropout_generators.0"])
    assert restored.random() == rng.random()


def test_layout_is_readable_with_plain_h5py(tmp_path):
    model, opt = trained_tiny()
    path = minialex.save(tmp_path / "a.h5", model, optimizer=opt, epoch=1)
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 1 and f.attrs["preset"] == "tiny"
        assert json.loads(f.attrs["config"])["class"] == "AlexNet"
        w = f["model/column0/conv1/weight"]
        assert w.shape == (3, 3, 5, 5) and w.dtype == numpy.float32      # (K, C, kh, kw)
        assert f["model/column1/fc7/weight"].shape == (8, 16)              # (out, in)
        assert f["model/fc8/bias"].shape == (5,)
        assert numpy.array_equal(f["model/column1/conv3/weight"][...],
                                 model.column1.conv3.weight.numpy())
        assert f["optimizer/velocity/column0/conv2/weight"].shape == (4, 3, 5, 5)
        assert f["optimizer"].attrs["lr"] == 0.05
        datasets = []
        f["model"].visititems(lambda name, obj: datasets.append(name)
                              if isinstance(obj, h5py.Dataset) else None)
    assert sorted(d.replace("/", ".") for d in datasets) == sorted(params_of(model))


@pytest.mark.parametrize("cls, kwargs", [
    (AlexNet, {"devices": TWO_CPUS}),
    (OneColumnAlexNet, {"device": "cpu"}),
])
def test_load_without_a_model_rebuilds_it_from_the_stored_config(tmp_path, cls, kwargs):
    model = cls(6, "tiny", seed=1, dtype=numpy.float64, init="paper", **kwargs)
    path = minialex.save(tmp_path / "m.h5", model)
    devices = TWO_CPUS if cls is AlexNet else "cpu"
    again = minialex.load(path, devices=devices)
    assert type(again) is cls and again.preset == "tiny" and again.num_classes == 6
    assert again.config == model.config
    for name, value in params_of(model).items():
        assert numpy.array_equal(params_of(again)[name], value), name


def test_loading_into_a_model_of_another_shape_lists_every_mismatch(tmp_path):
    model, _ = trained_tiny(num_classes=5)
    path = minialex.save(tmp_path / "five.h5", model)
    seven = AlexNet(7, "tiny", devices=TWO_CPUS)
    with pytest.raises(CheckpointError) as err:
        minialex.load(path, model=seven)
    text = str(err.value)            # one line: the first mismatch, as its path in the file
    assert text == (f"{path} does not fit AlexNet (preset tiny): fc8/weight is (5, 16) in the "
                    "file, (7, 16) in the model; 1 more")
    assert err.value.mismatches == ["fc8/weight is (5, 16) in the file, (7, 16) in the model",
                                    "fc8/bias is (5,) in the file, (7,) in the model"]
    one_column = OneColumnAlexNet(5, "tiny", device="cpu")
    with pytest.raises(CheckpointError, match="; [0-9]+ more$"):
        minialex.load(path, model=one_column)
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        minialex.load(path, model=AlexNet(5, "tiny", devices=TWO_CPUS),
                      optimizer=SGD(model.named_parameters()))


def test_files_that_are_not_checkpoints_raise_one_line_errors_naming_the_file(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not hdf5\n" * 100)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = numpy.zeros(3)
    model, _ = trained_tiny()
    good = minialex.save(tmp_path / "good.h5", model)
    truncated = tmp_path / "truncated.h5"
    data = open(good, "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    for path, why in ((text, "not a readable HDF5 file"), (plain, "not a minialex checkpoint"),
                      (truncated, "truncated"), (tmp_path / "missing.h5", "no such checkpoint")):
        with pytest.raises(CheckpointError) as err:
            minialex.load(path)
        message = str(err.value)
        assert str(path) in message and why in message, message
        assert "\n" not in message, message


def test_a_save_that_fails_midway_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    old, _ = trained_tiny(seed=0)
    path = minialex.save(tmp_path / "last.h5", old, epoch=1)
    new, _ = trained_tiny(seed=5)
    calls = {"n": 0}
    real = checkpoint._write_tree

    def failing(group, tree):
        calls["n"] += 1
        real(group, dict(list(tree.items())[:3]))      # some datasets written ...
        raise KeyboardInterrupt("stopped midway")     # ... then the run is interrupted
    monkeypatch.setattr(checkpoint, "_write_tree", failing)
    with pytest.raises(KeyboardInterrupt):
        minialex.save(path, new, epoch=2)
    assert calls["n"] == 1
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["last.h5"]                   # no temporary file left
    assert checkpoint.read_meta(path)["epoch"] == 1
    back = minialex.load(path, devices=TWO_CPUS)
    for name, value in params_of(old).items():
        assert numpy.array_equal(params_of(back)[name], value), name


def test_a_save_killed_with_sigkill_leaves_the_old_checkpoint(tmp_path):
    old, _ = trained_tiny(seed=0)
    path = minialex.save(tmp_path / "last.h5", old, epoch=1)
    script = textwrap.dedent(f"""
        import sys, time
        import minialex
        from minialex import checkpoint
        from minialex.models import AlexNet
        real = checkpoint._write_tree
        def slow(group, tree):
            real(group, dict(list(tree.items())[:2]))
            print("writing", flush=True)      # the temporary file is half written now
            time.sleep(60)
        checkpoint._write_tree = slow
        minialex.save({str(path)!r}, AlexNet(5, "tiny", devices=("cpu:0", "cpu:1"), seed=3),
                      epoch=2)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd()] + sys.path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    try:
        line = proc.stdout.readline()
        assert line.strip() == b"writing", line
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert checkpoint.read_meta(path)["epoch"] == 1
    back = minialex.load(path, devices=TWO_CPUS)
    for name, value in params_of(old).items():
        assert numpy.array_equal(params_of(back)[name], value), name
    leftovers = [n for n in os.listdir(tmp_path) if n != "last.h5"]
    assert all(n.startswith(".last.h5.") and n.endswith(".tmp") for n in leftovers), leftovers


def test_reserved_names_are_refused(tmp_path):
    model, _ = trained_tiny()
    with pytest.raises(ValueError, match="reserved"):
        minialex.save(tmp_path / "x.h5", model, preset="paper")
    with pytest.raises(ValueError, match="would overwrite"):
        minialex.save(tmp_path / "x.h5", model, extra={"model": {}})
    assert not os.path.exists(tmp_path / "x.h5")


def test_round_trip_from_any_backend(tmp_path, device):
    model = AlexNet(5, "tiny", devices=(device, device), seed=2)
    path = minialex.save(tmp_path / "m.h5", model)
    again = minialex.load(path, devices=(device, device))
    assert again.devices == (device, device)
    for (name, a), (_, b) in zip(model.named_parameters(), again.named_parameters()):
        assert b.device == device and numpy.array_equal(a.numpy(), b.numpy()), name


def test_saved_checkpoint_has_the_users_usual_file_mode(tmp_path):
    """save() writes through a temporary file (mkstemp makes it 0600); the checkpoint ends with
    the mode any new file of the user gets, so others can read it where the umask allows."""
    import os
    from minialex.models import AlexNet
    model = AlexNet(5, "tiny", seed=0)
    old = os.umask(0o022)
    try:
        minialex.save(tmp_path / "m.h5", model)
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "m.h5").st_mode & 0o777) == 0o644
