"""The training loop: a short run writes a loadable checkpoint; an interrupted and resumed run
computes exactly the losses of an uninterrupted one; a diverging run stops and keeps the last
good checkpoint; Ctrl-C is honoured between steps."""

import json
import os
import signal

import numpy
import pytest

import minialex
from minialex.checkpoint import read_extra, read_meta
from minialex.train.setup import choose_preset, parse_devices
from minialex.train.stop_flag import StopFlag
from minialex.train import TrainConfig, TrainingError, train

# 192 training images in batches of 32: 6 steps per epoch, about a second on the tiny preset.
SMALL = dict(preset="tiny", train_images=192, val_images=64, batch_size=32, progress=False,
             log_every=1)


def quiet(_):
    pass


def test_short_run_writes_a_loadable_checkpoint_and_metrics(tmp_path):
    out = tmp_path / "run"
    result = train(TrainConfig(epochs=2, out=str(out), **SMALL), echo=quiet)
    assert result.stopped == "finished" and result.epochs_done == 2 and result.steps == 12
    assert len(result.losses) == 12 and all(numpy.isfinite(result.losses))
    for name in ("last.h5", "best.h5", "metrics.jsonl", "config.json"):
        assert (out / name).exists(), name
    model = minialex.load(str(out / "last.h5"))
    assert model.preset == "tiny" and model.num_classes == 10
    meta = read_meta(str(out / "last.h5"))
    assert meta["epoch"] == 2 and meta["step"] == 12
    extra = read_extra(str(out / "last.h5"))
    assert extra["data"]["mean"].shape == (3,) and len(extra["data"]["classes"]) == 10
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["event"] == "epoch"]
    steps = [r for r in records if r["event"] == "step"]
    assert [r["epoch"] for r in epochs] == [1, 2] and len(steps) == 12
    for r in epochs:
        assert 0 <= r["val_top5_error"] <= r["val_top1_error"] <= 1
    # the optimizer's momentum buffers went in too, one per parameter
    from minialex.checkpoint import read_optimizer_state
    opt = read_optimizer_state(str(out / "last.h5"))
    assert set(opt["velocity"]) == {name for name, _ in model.named_parameters()}
    assert opt["lr"] == 0.01 and opt["steps"] == 12


def test_the_run_ends_with_best_h5_on_the_test_split_centre_crop_and_ten_patches(tmp_path):
    """The final test figures are best.h5's, as ``evaluate --split test`` (with and without
    ``--ten-crop``) gives them on the same images, and logged as the last record."""
    from minialex.tools.inference import evaluate_checkpoint
    out = tmp_path / "run"
    result = train(TrainConfig(epochs=2, out=str(out), **SMALL), echo=quiet)
    test = result.test
    assert test["images"] == 64 and test["epoch"] == result.best["epoch"]
    for ten, key in ((False, "test"), (True, "test_ten_crop")):
        _, r = evaluate_checkpoint(str(out / "best.h5"), split="test", ten_crop=ten, limit=64,
                                   progress=False)
        assert r.images == 64
        assert test[f"{key}_top1_error"] == pytest.approx(r.top1_error)
        assert test[f"{key}_loss"] == pytest.approx(r.loss, rel=1e-6)
    assert test["test_loss"] != pytest.approx(test["test_ten_crop_loss"], rel=1e-6)
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "test" and last["test_ten_crop_top1_error"] == test["test_ten_crop_top1_error"]


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path):
    full = train(TrainConfig(epochs=2, out=str(tmp_path / "full"), **SMALL), echo=quiet)

    def interrupt_at(step):
        def hook(s, loss):
            if s == step:
                raise KeyboardInterrupt
        return hook

    out = str(tmp_path / "parts")
    first = train(TrainConfig(epochs=2, out=out, **SMALL), echo=quiet, on_step=interrupt_at(4))
    assert first.stopped == "interrupted" and first.steps == 4
    meta = read_meta(os.path.join(out, "last.h5"))
    assert (meta["epoch"], meta["batch"], meta["step"]) == (0, 4, 4)
    second = train(TrainConfig(resume=os.path.join(out, "last.h5"), progress=False, log_every=1),
                   echo=quiet, on_step=interrupt_at(9))
    assert second.stopped == "interrupted" and second.steps == 9
    third = train(TrainConfig(resume=out, progress=False, log_every=1), echo=quiet)
    assert third.stopped == "finished"

    losses = first.losses + second.losses + third.losses
    assert losses == full.losses  # bit for bit: same batches, same dropout masks, same updates
    a = minialex.load(os.path.join(out, "last.h5"))
    b = minialex.load(str(tmp_path / "full" / "last.h5"))
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        numpy.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)
    assert [h["val_top1_error"] for h in third.history] == \
        [h["val_top1_error"] for h in full.history]
    # the metrics log of the resumed run has each step exactly once
    steps = [json.loads(l)["step"] for l in open(os.path.join(out, "metrics.jsonl"))
             if '"step"' in l and '"event": "step"' in l]
    assert steps == list(range(1, 13))


def test_diverging_run_stops_naming_the_step_and_keeps_the_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(epochs=1, out=str(out), **SMALL), echo=quiet)
    good = (out / "last.h5").read_bytes()
    with pytest.raises(TrainingError, match=r"at step \d+ \(epoch 2, batch \d+\).*last good checkpoint"):
        train(TrainConfig(resume=str(out), epochs=3, lr=1e30, progress=False), echo=quiet)
    assert (out / "last.h5").read_bytes() == good
    assert read_meta(str(out / "last.h5"))["epoch"] == 1
    minialex.load(str(out / "last.h5"))


def test_diverging_from_the_start_says_no_checkpoint(tmp_path):
    with pytest.raises(TrainingError, match=r"at step \d+ \(epoch 1, batch \d+\).*no checkpoint was written"):
        train(TrainConfig(epochs=1, out=str(tmp_path / "r"), lr=1e30, **{**SMALL, "batch_size": 64}),
              echo=quiet)
    assert not (tmp_path / "r" / "last.h5").exists()


def test_weights_spoiled_by_the_last_step_of_an_epoch_are_never_saved(tmp_path):
    """With one step per epoch, the only training loss read is from before the update; the
    validation loss is the first to see the blown-up weights, and must stop the save."""
    out = tmp_path / "r"
    with pytest.raises(TrainingError, match=r"validation loss became .* after epoch 1.*no "
                                            r"checkpoint was written"):
        train(TrainConfig(epochs=2, out=str(out), lr=1e30, limit_batches=1, **SMALL), echo=quiet)
    assert not (out / "last.h5").exists() and not (out / "best.h5").exists()


def test_an_interrupted_copy_of_best_leaves_no_partial_file(tmp_path, monkeypatch):
    from minialex import files
    src, dst = tmp_path / "last.h5", tmp_path / "best.h5"
    src.write_bytes(b"new" * 1000)
    dst.write_bytes(b"old")

    def copy_half_then_ctrl_c(source, fh):
        fh.write(b"ne")
        raise KeyboardInterrupt

    monkeypatch.setattr(files.shutil, "copyfileobj", copy_half_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        files.copy_atomic(str(src), str(dst))
    assert dst.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["best.h5", "last.h5"]


def test_a_second_ctrl_c_while_validating_stops_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    from minialex.train import loop as evaluate_module   # the loop's own name for evaluate
    out = tmp_path / "r"
    train(TrainConfig(epochs=1, out=str(out), **SMALL), echo=quiet)
    good = (out / "last.h5").read_bytes()

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_module, "evaluate", ctrl_c)
    said = []
    result = train(TrainConfig(resume=str(out), epochs=2, progress=False), echo=said.append)
    assert result.stopped == "interrupted" and result.steps == 12
    assert "second Ctrl-C" in said[-1] and "--resume" in said[-1] and "last.h5" in said[-1]
    assert (out / "last.h5").read_bytes() == good


def test_resume_refuses_other_data_order_options(tmp_path):
    out = tmp_path / "r"
    train(TrainConfig(epochs=1, out=str(out), **SMALL), echo=quiet)
    for option, value, flag in (("batch_size", 16, "--batch-size 32"), ("seed", 5, "--seed 0"),
                                ("train_images", 100, "--train-images 192"),
                                ("data", "fashion-mnist", "--data builtin")):
        with pytest.raises(TrainingError, match=f"trained with {flag}, not {value}"):
            train(TrainConfig(resume=str(out), epochs=2, progress=False, **{option: value}),
                  echo=quiet)
    said = []    # the same values given again are fine
    result = train(TrainConfig(resume=str(out), epochs=2, batch_size=32, seed=0, data="builtin",
                               progress=False), echo=said.append)
    assert result.epochs_done == 2 and any("the preset of" in line for line in said)


def test_a_new_run_never_writes_over_another_run(tmp_path):
    out = tmp_path / "r"
    train(TrainConfig(epochs=1, out=str(out), **SMALL), echo=quiet)
    before = (out / "metrics.jsonl").read_text()
    with pytest.raises(TrainingError, match=r"already holds a run.*--resume .*another --out"):
        train(TrainConfig(epochs=1, out=str(out), **SMALL), echo=quiet)
    assert (out / "metrics.jsonl").read_text() == before


def test_an_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("hi")
    with pytest.raises(TrainingError, match=r"--out .*afile is a file, not a folder"):
        train(TrainConfig(epochs=1, out=str(tmp_path / "afile"), **SMALL), echo=quiet)
    assert (tmp_path / "afile").read_text() == "hi"


def test_a_run_stopped_before_its_first_checkpoint_leaves_nothing(tmp_path, monkeypatch):
    from minialex.train import loop as train_module

    def second_ctrl_c(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module.Trainer, "_batches_per_epoch", second_ctrl_c)
    said = []
    result = train(TrainConfig(epochs=1, out=str(tmp_path / "r"), **SMALL), echo=said.append)
    assert result.stopped == "interrupted" and "no checkpoint was written yet" in said[-1]
    assert not (tmp_path / "r").exists()


def test_too_large_a_batch_is_refused_before_any_folder_is_made(tmp_path):
    with pytest.raises(TrainingError, match=r"--batch-size 32 is more than the 20 training images"):
        train(TrainConfig(epochs=1, out=str(tmp_path / "r"), **{**SMALL, "train_images": 20}),
              echo=quiet)
    assert not (tmp_path / "r").exists()


def test_a_relative_data_path_is_stored_absolute(tmp_path, monkeypatch):
    from minialex.tools.prepare import prepare_cache
    monkeypatch.chdir(tmp_path)
    prepare_cache("builtin", "shapes.h5", base_size=40, progress=False, num_train=64, num_val=32)
    train(TrainConfig(data="shapes.h5", epochs=1, out="r", **{**SMALL, "train_images": None,
                                                               "val_images": None}), echo=quiet)
    spec = read_extra(str(tmp_path / "r" / "last.h5"))["data"]["spec"]
    assert os.path.isabs(spec) and os.path.samefile(spec, tmp_path / "shapes.h5")
    monkeypatch.chdir(tmp_path.parent)        # from elsewhere, the run still finds its data
    result = train(TrainConfig(resume=str(tmp_path / "r"), epochs=2, progress=False), echo=quiet)
    assert result.epochs_done == 2


def test_resuming_an_older_checkpoint_must_not_overwrite_newer_epochs(tmp_path):
    out = tmp_path / "r"
    train(TrainConfig(epochs=2, out=str(out), **SMALL), echo=quiet)
    (out / "epoch1.h5").write_bytes((out / "last.h5").read_bytes())
    train(TrainConfig(resume=str(out), epochs=3, progress=False), echo=quiet)
    with pytest.raises(TrainingError, match=r"epoch1.h5 is from epoch 2, but .*last.h5 is at "
                                            r"epoch 3.*--out NEW_FOLDER"):
        train(TrainConfig(resume=str(out / "epoch1.h5"), epochs=4, progress=False), echo=quiet)
    with pytest.raises(TrainingError, match=r"would overwrite the later epochs"):
        train(TrainConfig(resume=str(out / "epoch1.h5"), epochs=4, out=str(out) + os.sep,
                          progress=False), echo=quiet)       # its own folder, named with --out
    branch = train(TrainConfig(resume=str(out / "epoch1.h5"), epochs=3, out=str(tmp_path / "b"),
                               progress=False), echo=quiet)
    assert branch.epochs_done == 3 and read_meta(str(out / "last.h5"))["epoch"] == 3
    assert (tmp_path / "b" / "best.h5").exists()     # inherited, even if no later epoch beat it


def test_decay_biases_comes_from_the_checkpoint_unless_given(tmp_path):
    from minialex.checkpoint import read_optimizer_state
    out = tmp_path / "r"
    train(TrainConfig(epochs=1, out=str(out), decay_biases=True, **SMALL), echo=quiet)
    said = []
    train(TrainConfig(resume=str(out), epochs=2, progress=False), echo=said.append)
    assert any("(biases too)" in line for line in said)
    assert read_optimizer_state(str(out / "last.h5"))["decay_biases"]
    said = []
    train(TrainConfig(resume=str(out), epochs=3, decay_biases=False, progress=False),
          echo=said.append)
    assert any("(not on biases)" in line for line in said)
    assert not read_optimizer_state(str(out / "last.h5"))["decay_biases"]
    assert json.loads((out / "config.json").read_text())["decay_biases"] is False


def test_nothing_to_do_leaves_the_finished_run_alone(tmp_path):
    out = tmp_path / "r"
    train(TrainConfig(epochs=2, out=str(out), **SMALL), echo=quiet)
    config = (out / "config.json").read_text()
    said = []
    result = train(TrainConfig(resume=str(out), epochs=1, progress=False), echo=said.append)
    assert result.steps == 12 and "the run has done 2 epochs already" in said[-1]
    assert (out / "config.json").read_text() == config
    train(TrainConfig(resume=str(out), epochs=1, out=str(tmp_path / "new"), progress=False),
          echo=quiet)
    assert not (tmp_path / "new").exists()          # nothing to do: no folder made either


def test_ctrl_c_while_the_data_is_read_saves_before_the_first_step(tmp_path, monkeypatch):
    from minialex.train import loop as train_module
    real = train_module.Trainer._batches_per_epoch

    def with_ctrl_c(self):
        os.kill(os.getpid(), signal.SIGINT)      # the first Ctrl-C, during setup
        return real(self)

    monkeypatch.setattr(train_module.Trainer, "_batches_per_epoch", with_ctrl_c)
    result = train(TrainConfig(epochs=1, out=str(tmp_path / "r"), **SMALL), echo=quiet)
    assert result.stopped == "interrupted" and result.steps == 0
    assert read_meta(str(tmp_path / "r" / "last.h5"))["step"] == 0


def test_two_ctrl_c_after_an_update_save_the_position_after_it(tmp_path, monkeypatch):
    """Both presses land after the weights were updated but before the step was counted: the
    step is counted first, so the checkpoint's weights and position agree and the resumed run
    matches an uninterrupted one (it does not repeat the batch)."""
    from minialex.train import loop as train_module
    full = train(TrainConfig(epochs=1, out=str(tmp_path / "full"), **SMALL), echo=quiet)
    real_topk, calls = train_module._top1_correct, []

    def topk_with_two_ctrl_c(*args):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real_topk(*args)

    monkeypatch.setattr(train_module, "_top1_correct", topk_with_two_ctrl_c)
    out = tmp_path / "r"
    first = train(TrainConfig(epochs=1, out=str(out), **SMALL), echo=quiet)
    assert first.stopped == "interrupted" and first.steps == 3
    assert read_meta(str(out / "last.h5"))["step"] == 3
    monkeypatch.setattr(train_module, "_top1_correct", real_topk)
    rest = train(TrainConfig(resume=str(out), progress=False, log_every=1), echo=quiet)
    assert first.losses + rest.losses == full.losses


def test_ctrl_c_is_deferred_to_the_end_of_the_step():
    with StopFlag() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        stop.critical = True                    # during the weight update even a second
        os.kill(os.getpid(), signal.SIGINT)     # Ctrl-C waits for the update to finish
        stop.critical = False
        with pytest.raises(KeyboardInterrupt):  # otherwise a second Ctrl-C stops at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_preset_and_devices_choice():
    assert choose_preset(None, parse_devices("cpu"))[0] == "mini"
    assert choose_preset(None, parse_devices("cpu:0,cpu:1"))[0] == "mini"
    assert choose_preset("tiny", None) == ("tiny", "chosen with --preset")
    # Fashion-MNIST's 28x28 grey images get their own preset on any device, unless one is given.
    assert choose_preset(None, parse_devices("cpu"), "fashion-mnist")[0] == "fashion"
    assert choose_preset(None, None, "fashion-mnist:/somewhere")[0] == "fashion"
    assert choose_preset("mini", None, "fashion-mnist")[0] == "mini"
    assert choose_preset(None, parse_devices("cpu"), "builtin")[0] == "mini"
    d0, d1 = parse_devices("cpu:0,cpu:1")
    assert (str(d0), str(d1)) == ("cpu:0", "cpu:1")
    with pytest.raises(ValueError, match="one or two devices"):
        parse_devices("cpu,cpu,cpu")
    if not minialex.gpu_available():
        with pytest.raises(ValueError, match="does not exist"):
            parse_devices("cuda:0")


def test_default_epochs_follow_the_data_even_through_a_cache(tmp_path):
    from minialex.tools.prepare import prepare_cache
    from minialex.train.setup import default_epochs
    cache = tmp_path / "shapes.h5"
    prepare_cache("builtin", str(cache), base_size=16, progress=False, num_train=20, num_val=10)
    assert default_epochs("builtin", "mini") == default_epochs(str(cache), "mini") == 12
    assert default_epochs("fashion-mnist", "mini") == 20
    from minialex.train.setup import recipe
    assert recipe(str(cache), "mini") == {"epochs": 12}          # the paper's lr and plateau
    assert recipe("fashion-mnist", "mini") == {"lr": 0.03, "schedule": "step", "step_size": 8,
                                               "epochs": 20}
    assert recipe("fashion-mnist", "fashion") == {"lr": 0.03, "schedule": "step", "step_size": 10,
                                                  "base_size": 54, "epochs": 24}
    assert default_epochs("/data/imagenet", "paper") == default_epochs("fashion-mnist", "paper") == 90


def test_a_data_recipe_sets_the_batch_and_lr_unless_they_are_given(tmp_path, monkeypatch):
    from minialex.train import setup as run_setup
    monkeypatch.setitem(run_setup.RECIPES, ("builtin", "tiny"), dict(batch_size=16, lr=0.02))
    small = {k: v for k, v in SMALL.items() if k != "batch_size"}
    lines = []
    took = train(TrainConfig(epochs=1, out=str(tmp_path / "a"), **small), echo=lines.append)
    assert took.steps == 192 // 16
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["batch_size"] == 16 and config["lr"] == 0.02
    banner = next(line for line in lines if line.startswith("AlexNet 'tiny'"))
    assert "batch 16" in banner and "batch_size, lr: this data's measured recipe" in banner
    given = train(TrainConfig(epochs=1, out=str(tmp_path / "b"), batch_size=32, **small),
                  echo=quiet)
    assert given.steps == 192 // 32


def test_two_logical_devices_train_like_one(tmp_path):
    """Columns on 'cpu:0' and 'cpu:1' (the two-GPU discipline on a CPU) give the same losses."""
    one = train(TrainConfig(epochs=1, out=str(tmp_path / "a"), **SMALL), echo=quiet)
    two = train(TrainConfig(epochs=1, out=str(tmp_path / "b"), devices="cpu:0,cpu:1", **SMALL),
                echo=quiet)
    numpy.testing.assert_allclose(two.losses, one.losses, rtol=1e-5)


def test_out_of_gpu_memory_suggests_a_smaller_batch(tmp_path, monkeypatch):
    from minialex.train import loop as train_module

    class OutOfMemoryError(MemoryError):  # what cupy.cuda.memory raises, by name
        pass

    def step(self, images, labels):
        raise OutOfMemoryError("out of memory allocating 1,234,567 bytes")

    monkeypatch.setattr(train_module.Trainer, "train_step", step)
    with pytest.raises(TrainingError, match="out of GPU memory at batch size 32.*--batch-size 16"):
        train(TrainConfig(epochs=1, out=str(tmp_path / "r"), **SMALL), echo=quiet)


def test_default_out_folder_and_latest_link(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = train(TrainConfig(epochs=1, **{**SMALL, "limit_batches": 1}), echo=quiet)
    assert os.path.dirname(result.out_dir) == "runs"
    assert os.path.exists(os.path.join("runs", "latest", "last.h5"))


def test_base_size_sets_the_crop_margin_and_is_kept_on_resume(tmp_path):
    out = str(tmp_path / "run")
    lines = []
    train(TrainConfig(epochs=1, out=out, base_size=36, **SMALL), echo=lines.append)
    assert any("stored 36x36, random 33x33 crops" in line for line in lines)
    from minialex.tools.inference import load_trained
    assert load_trained(out + "/best.h5").base_size == 36       # evaluate crops as training did
    with pytest.raises(TrainingError, match="trained with --base-size 36, not 40"):
        train(TrainConfig(epochs=2, resume=out, base_size=40, progress=False), echo=quiet)
    assert train(TrainConfig(epochs=2, resume=out, progress=False), echo=quiet).epochs_done == 2
    with pytest.raises(ValueError, match="--base-size 30 is smaller than preset 'tiny''s 33x33"):
        train(TrainConfig(epochs=1, out=str(tmp_path / "small"), base_size=30, **SMALL), echo=quiet)
