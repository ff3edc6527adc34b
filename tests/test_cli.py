"""The command line as a user meets it: every command has --help with an example; a tiny run
trains, evaluates, predicts and draws; user mistakes give one line and exit status 1."""

import os

import pytest
from click.testing import CliRunner
from PIL import Image

from minialex import cpu
from minialex.tools import cli
from minialex.tools.cli import main
from one_line import one_line_error

TINY = ["--preset", "tiny", "--train-images", "192", "--val-images", "64", "--batch-size", "32",
        "--no-progress"]
COMMANDS = ["train", "evaluate", "predict", "info", "filters", "neighbors", "plot", "gradcheck",
            "bench", "export"]


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False
                                if ok else True)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny two-epoch run shared by the tests below (about two seconds)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    result = run("train", *TINY, "--epochs", "2", "--out", out)
    return out, result.output


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """Two image files of the built-in set, as a user would pass them to predict."""
    from minialex.data import open_dataset
    folder = tmp_path_factory.mktemp("images")
    ds = open_dataset("builtin", "val", num_val=20)
    paths = []
    for i in (0, 3):
        image, label = ds.load(i)
        path = folder / f"{ds.classes[label]}.png"
        Image.fromarray(image).resize((120, 90)).save(path)  # not square: predict crops it
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_an_example(name):
    out = run(name, "--help").output
    assert "Example" in out and "python cli.py " + name in out


def test_top_level_help_lists_the_commands():
    out = run("--help").output
    for name in COMMANDS:
        assert name in out


def test_train_prints_what_it_does_and_writes_the_run(trained):
    out, text = trained
    first, second = text.splitlines()[:2]
    assert first.startswith("preset 'tiny' on cpu")
    assert second == f"the CPU: {cpu.THREADS} threads, GEMMs by {cpu.blas_kernels()}"
    assert "epoch   2/2" in text and "top-5 err" in text and "done: best validation" in text
    for name in ("last.h5", "best.h5", "metrics.jsonl", "config.json"):
        assert (out / name).exists()


def test_evaluate_prints_an_error_table(trained):
    out, _ = trained
    text = run("evaluate", out / "best.h5", "--limit", "64").output
    assert "top-1 error" in text and "top-5 error" in text and "64   (centre crop)" in text
    ten = run("evaluate", out / "last.h5", "--ten-crop", "--limit", "20").output
    assert "10 patches" in ten and "20" in ten


def test_predict_gives_five_classes_per_image(trained, image_files):
    out, _ = trained
    text = run("predict", out / "best.h5", *image_files).output
    lines = text.splitlines()
    assert lines[0] == image_files[0] and lines[6] == image_files[1]
    probs = [float(l.split()[-1].rstrip("%")) for l in lines if l.startswith("  ")]
    assert len(probs) == 10 and all(0 <= p <= 100 for p in probs)
    assert probs[:5] == sorted(probs[:5], reverse=True)


def test_info_settles_the_options_as_train_does_and_draws_figure_2(tmp_path):
    """info --data lists the options train settles on (setup.settle, the one place), and
    info --figure writes the paper's Figure 2 drawn from the layer table."""
    from PIL import Image
    from minialex.train import TrainConfig
    from minialex.train.setup import settle
    text = run("info", "--preset", "fashion", "--data", "fashion-mnist", "--num-classes", "10",
               "--figure", tmp_path / "f2.png").output
    cfg = TrainConfig(data="fashion-mnist", preset="fashion")
    settle(cfg)
    assert (f"lr {cfg.lr} (the data's recipe)" in text and f"epochs {cfg.epochs}," in text
            and f"schedule {cfg.schedule}" in text and cfg.lr != 0.01)
    assert "settles on" not in run("info", "--preset", "tiny").output
    with Image.open(tmp_path / "f2.png") as image:
        assert image.width > 500 and image.height > 200
    ckpt = tmp_path / "model.h5"
    ckpt.write_bytes(b"not a picture")
    result = run("info", "--figure", ckpt, ok=False)                  # never over a checkpoint
    assert result.exit_code == 1 and ckpt.read_bytes() == b"not a picture"


def test_info_prints_the_paper_parameter_count():
    text = run("info").output
    assert "60,965,224" in text and "227" in text and "fc8" in text and "LRN" in text
    assert "BOTH columns" in text and "devices here (--devices): column 0 on" in text and "the paper's placement" in text
    mini = run("info", "--preset", "mini", "--num-classes", "10").output
    assert "60,965,224" not in mini and "'mini'" in mini
    assert "fashion-mnist on 'mini' takes a measured recipe" in mini and "lr 0.03" in mini
    assert "measured recipe" not in text                  # the paper preset keeps the paper's
    fashion = run("info", "--preset", "fashion", "--num-classes", "10").output
    assert "fashion-mnist on 'fashion' takes a measured recipe" in fashion
    assert "images stored 54x54 for the 51x51 crops" in fashion and "1,468,154" in fashion
    assert "7x7x1, s2" in fashion and "averaged over the three channels" in fashion
    assert "lr 0.03" in fashion and "24 epochs" in fashion
    assert ("conv2 by Winograd's F(3x3, 5x5) at batches of 1 and up; conv3, conv4, conv5 by "
            "Winograd's F(3x3, 3x3) at batches of 8 and up") in text
    assert "convolutions on the CPU: im2col + GEMM (functional/conv.py)" in mini   # too narrow


def _png_size(path):
    with Image.open(path) as im:
        return im.size


def test_filters_of_a_grayscale_run_draw_each_kernels_channel_sum(tmp_path):
    """Trained on grayscale data (R = G = B, a rank-one colour covariance), only a kernel's
    channel sum acts: the picture draws that sum in grey, and says so, instead of RGB noise."""
    import numpy
    import minialex
    from minialex.models import AlexNet
    model = AlexNet(10, "tiny", devices="cpu", seed=0)
    eig = numpy.array([0.1, 0.0, 0.0])
    vec = numpy.full((3, 3), 1 / numpy.sqrt(3))
    path = minialex.save(tmp_path / "gray.h5", model, extra={"data": {
        "mean": numpy.full(3, 0.3), "pca_eigenvalues": eig, "pca_eigenvectors": vec}})
    text = run("filters", path, "--out", tmp_path / "g.png", "--zoom", "2").output
    assert "sum of its three channels" in text and "colour:" not in text
    with Image.open(tmp_path / "g.png") as im:
        pixels = numpy.asarray(im.convert("RGB")).astype(int)
    top = pixels[:10]                                       # the first row of kernels
    assert (top[..., 0] == top[..., 1]).all() and (top[..., 1] == top[..., 2]).all()
    k = model.column0.conv1.weight.numpy()[0].sum(axis=0)   # the first kernel's sum, stretched
    want = numpy.round(255 * (k - k.min()) / (k.max() - k.min()))
    assert numpy.array_equal(pixels[0:2 * k.shape[0]:2, 0:2 * k.shape[1]:2, 0], want)
    assert pixels.shape[0] > 20 and (pixels[-16:] < 128).any()   # the caption strip has text


def test_filters_of_a_grey_model_draw_its_one_channel(tmp_path):
    """A grey preset's conv1 has one input channel: drawn as it is, and said so."""
    import dataclasses
    import numpy
    import minialex
    from minialex.models import AlexNet, get_preset
    model = AlexNet(10, dataclasses.replace(get_preset("tiny"), grey=True), devices="cpu", seed=0)
    path = minialex.save(tmp_path / "grey.h5", model)
    text = run("filters", path, "--out", tmp_path / "g.png", "--zoom", "2").output
    assert "kernels of 1x5x5" in text and "reads grey images" in text and "colour:" not in text
    with Image.open(tmp_path / "g.png") as im:
        pixels = numpy.asarray(im.convert("RGB")).astype(int)
    k = model.column0.conv1.weight.numpy()[0, 0]
    want = numpy.round(255 * (k - k.min()) / (k.max() - k.min()))
    assert numpy.array_equal(pixels[0:2 * k.shape[0]:2, 0:2 * k.shape[1]:2, 1], want)


def test_filters_plot_and_neighbors_draw_pictures(trained, tmp_path, image_files):
    out, _ = trained
    text = run("filters", out / "best.h5", "--out", tmp_path / "f.png").output
    assert "colour" in text
    w, h = _png_size(tmp_path / "f.png")
    assert w > 50 and h > 20 and os.path.getsize(tmp_path / "f.png") > 500

    run("plot", out, "--out", tmp_path / "c.png")
    w, h = _png_size(tmp_path / "c.png")
    assert w > 600 and h > 200

    text = run("neighbors", out / "best.h5", "--out", tmp_path / "n.png", "--top5-out",
               tmp_path / "t.png", "--search", "64", "--queries", "3", "-k", "4").output
    assert text.count("nearest training images are") == 3
    w, h = _png_size(tmp_path / "n.png")
    assert w > 4 * 96 and h > 2 * 96
    assert _png_size(tmp_path / "t.png")[0] > 300
    text = run("neighbors", out / "best.h5", image_files[0], "--out", tmp_path / "n1.png",
               "--top5-out", tmp_path / "t1.png", "--search", "64").output
    assert image_files[0] in text


def test_gradcheck_command_passes_on_the_cpu():
    text = run("gradcheck", "--device", "cpu").output
    assert "14 of 14 passed" in text and "local_response_norm" in text


def test_bench_times_a_step_on_the_cpu():
    text = run("bench", "--preset", "tiny", "--batch-size", "8", "--steps", "1",
               "--warmup", "0", "--devices", "cpu").output
    assert "training step" in text and "images/s" in text
    assert f"GEMMs by {cpu.blas_kernels()}" in text         # which kernels ran the products


# --------------------------------------------------------------------------------------------
# User mistakes: one line, exit status 1, no traceback; --debug shows it
# --------------------------------------------------------------------------------------------

def test_missing_checkpoint(tmp_path):
    one_line_error(run("evaluate", tmp_path / "nope.h5", ok=False), "nope.h5", "no such")


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("hello")
    one_line_error(run("filters", bad, ok=False), "bad.h5")


def test_unknown_preset():
    one_line_error(run("train", "--preset", "huge", ok=False), "huge", "paper")
    one_line_error(run("info", "--preset", "huge", ok=False), "huge")


def test_bad_data_spec(tmp_path):
    one_line_error(run("train", "--data", tmp_path / "missing", *TINY, ok=False),
                    "missing", "not found")


def test_checkpoint_of_another_model(trained, tmp_path):
    out, _ = trained
    one_line_error(run("train", "--resume", out / "last.h5", "--preset", "mini",
                        "--out", tmp_path / "x", ok=False), "tiny", "mini")
    # weights of another shape: a 'mini' file under a 'tiny' name cannot be resumed from
    from minialex import save
    from minialex.models import AlexNet
    other = tmp_path / "other.h5"
    save(str(other), AlexNet(num_classes=3, preset="tiny", seed=0))
    one_line_error(run("predict", other, __file__, ok=False), "other.h5")


def test_missing_image_and_non_image(trained, tmp_path):
    out, _ = trained
    one_line_error(run("predict", out / "best.h5", tmp_path / "nope.png", ok=False), "nope.png")
    text_file = tmp_path / "notes.png"
    text_file.write_text("not an image")
    one_line_error(run("predict", out / "best.h5", text_file, ok=False), "notes.png")


def test_another_datasets_labels_are_never_read_as_the_checkpoints(trained, tmp_path):
    from test_data_sources import make_image_folder
    out, _ = trained
    folder = make_image_folder(tmp_path / "pets", bad=False)     # cat, dog, fish
    for command in ("evaluate", "neighbors"):
        one_line_error(run(command, out / "best.h5", "--data", folder, ok=False),
                        "3 classes", "cat", "trained on 10")


def test_outputs_and_logs_that_cannot_work(trained, tmp_path):
    out, _ = trained
    one_line_error(run("neighbors", out / "best.h5", "--out", tmp_path / "same.png",
                        "--top5-out", tmp_path / "same.png", ok=False), "both")
    one_line_error(run("prepare", "builtin", "--out", tmp_path / "cache.txt", ok=False), ".h5")
    assert not (tmp_path / "cache.txt").exists()
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"event": "step"}\n[1, 2]\n')
    one_line_error(run("plot", log, ok=False), "line 2 is not a JSON object")


def test_plot_of_a_run_in_its_first_epoch(tmp_path, recwarn):
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(f'{{"event": "step", "step": {i}, "epoch": 1, "epoch_float": {i / 10},'
                           f' "loss": {2.3 - i / 10}, "lr": 0.01}}\n' for i in range(1, 4)))
    run("plot", tmp_path)
    assert (tmp_path / "curves.png").exists()
    assert not [w for w in recwarn if "legend" in str(w.message)]


def test_devices_that_name_nothing():
    one_line_error(run("info", "--devices", ",", ok=False), "names no device")


def test_a_device_that_does_not_exist():
    import minialex
    if minialex.gpu_count() >= 8:
        pytest.skip("this machine has cuda:7")
    one_line_error(run("gradcheck", "--device", "cuda:7", ok=False), "cuda:7", "does not exist")
    one_line_error(run("train", "--devices", "cuda:7", *TINY, ok=False), "cuda:7")


def test_plot_of_a_folder_without_metrics(tmp_path):
    one_line_error(run("plot", tmp_path, ok=False), "metrics.jsonl")
    checkpoint = tmp_path / "last.h5"
    checkpoint.write_bytes(b"\x89HDF\r\n\x1a\n\xff\xfe" * 8)
    one_line_error(run("plot", checkpoint, ok=False), "last.h5", "not a metrics log")


def test_debug_shows_the_traceback(tmp_path):
    result = CliRunner().invoke(main, ["--debug", "evaluate", str(tmp_path / "nope.h5")])
    assert result.exit_code != 0 and result.exception is not None
    assert not isinstance(result.exception, SystemExit)
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "nope.h5"), "--debug"])
    assert not isinstance(result.exception, SystemExit)


def test_ctrl_c_during_train_saves_and_exits_130(tmp_path, monkeypatch):
    from minialex.train import loop as train_module
    real_step = train_module.Trainer.train_step
    calls = []

    def step(self, images, labels):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if Ctrl-C were pressed twice during the third step
        return real_step(self, images, labels)

    monkeypatch.setattr(train_module.Trainer, "train_step", step)
    result = run("train", *TINY, "--epochs", "1", "--out", tmp_path / "r", ok=False)
    assert result.exit_code == cli.EXIT_INTERRUPTED, result.output
    assert "interrupted at epoch 1, batch 2" in result.output and "--resume" in result.output
    from minialex.checkpoint import read_meta
    assert read_meta(str(tmp_path / "r" / "last.h5"))["step"] == 2


def test_real_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path):
    """A SIGINT to a real `python cli.py train` process: it finishes the step, saves, exits 130."""
    import signal
    import subprocess
    import sys
    import time
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, os.path.join(root, "cli.py"), "train", *TINY,
                             "--epochs", "50", "--out", str(out)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == cli.EXIT_INTERRUPTED, output
    assert "interrupted at epoch" in output and "Traceback" not in output
    from minialex.checkpoint import read_meta
    assert read_meta(str(out / "last.h5"))["step"] >= 2


def test_an_evaluation_of_broken_weights_says_so():
    from minialex.train.evaluate import EvalResult
    assert "warning" not in EvalResult(0.5, 0.2, 0.05, 10).table()
    assert "not finite" in EvalResult(float("nan"), 0.9, 0.5, 10).table().splitlines()[-1]
    assert "n/a" in EvalResult(0.5, 0.2, 0.0, 10, classes=3).table()
    assert "n/a" not in EvalResult(0.5, 0.2, 0.0, 10, classes=10).table()
