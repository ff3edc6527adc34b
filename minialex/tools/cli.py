"""The command line: ``python cli.py COMMAND`` or, once installed, ``minialex COMMAND``.

Thin by design: each command parses its options and calls a job: the core's training loop
(``minialex.train``) or a tool beside this file (inference, viz, health, benchmark, prepare,
export_onnx, distributed), with the choices they share in ``minialex.train.setup``. A user mistake (a missing file, an unknown
preset, a checkpoint of another model, a bad data spec) prints one line, ``error: ...``, and
exits with status 1; ``--debug`` (before or after the command name) shows the traceback instead.
A run stopped with Ctrl-C exits with status 130 after saving its checkpoint, one stopped with
SIGTERM (a batch scheduler's stop) with 143 (a second one: at once, keeping the last checkpoint
written).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys

import click

from .. import cpu
from ..backend import DeviceError, default_device, default_devices, gpu_available
from ..checkpoint import CheckpointError, WriteError, read_extra
from ..data import DataError, base_size_for
from ..files import LockedError, check_folder_path, check_output, read_log, size_text
from ..functional import conv_cpu, winograd
from ..models import get_preset, table
from ..train.loop import TrainingError
from ..train.setup import (DEFAULTS, RECIPES, choose_preset, default_epochs, parse_devices,
                           set_precision, settle)
from ..train import TrainConfig, train
from ..train.stop_flag import Terminated, sigterm_interrupts
from . import distributed
from .benchmark import format_result, time_training_step
from .distributed import error_line
from .export_onnx import export_checkpoint
from .health import format_table, run_checks
from .inference import (colourfulness, conv1_kernels, evaluate_checkpoint, format_top5, neighbours,
                        predict_files)
from .prepare import prepare_cache
from .figure2 import draw_figure2
from .viz import save_figure, save_filters, save_neighbours, save_top5, save_training_curves

#: Exit status of a user mistake, and of a job stopped by Ctrl-C (128 + SIGINT) or SIGTERM.
EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def _user_errors():
    """Exception types that mean 'the user asked for something that cannot be done'."""
    return (DataError, CheckpointError, TrainingError, DeviceError, FileNotFoundError,
            IsADirectoryError, PermissionError, ValueError, WriteError, LockedError)


def _fail(message: str, error: BaseException = None) -> None:
    line = error_line(message, error)
    if line:
        click.echo(line, err=True)
    sys.exit(EXIT_USER_ERROR)


def command(*args, **kwargs):
    """``main.command`` plus a ``--debug`` flag, one-line errors for user mistakes, and Ctrl-C or
    SIGTERM as a clean stop: the exception unwinds (a file being written through
    ``files.write_atomic`` loses only its temporary copy), one line says so, and the exit status
    is 130 or 143. ``train`` and ``prepare`` stop more gently still, at a point they can resume."""
    def decorate(fn):
        @main.command(*args, **kwargs)
        @click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
        @click.pass_context
        @functools.wraps(fn)
        def wrapper(ctx, debug, **options):
            debug = debug or bool(ctx.obj and ctx.obj.get("debug"))
            try:
                with sigterm_interrupts():
                    return fn(**options)
            except KeyboardInterrupt as e:
                if debug:
                    raise
                name = "SIGTERM" if isinstance(e, Terminated) else "Ctrl-C"
                click.echo(f"stopped by {name}; any file it was writing is left as it was",
                           err=True)
                sys.exit(EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED)
            except MemoryError as e:     # numpy's _ArrayMemoryError; train says more (loop.py)
                if debug:
                    raise
                wanted = getattr(e, "_total_size", None)
                _fail("out of memory on the CPU"
                      + (f" (an array of {size_text(wanted)} more could not be had)" if wanted
                         else "") + ": "
                      + (f"give a smaller --batch-size than {options['batch_size']}"
                         if options.get("batch_size") else "give fewer images at once"), e)
            except _user_errors() as e:
                if debug:
                    raise
                text = str(e).strip().splitlines()
                first = text[0].rstrip(":") if text else type(e).__name__
                more = " (--debug shows the details)" if len(text) > 1 else ""
                _fail(first + more, e)
        return wrapper
    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="minialex")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx, debug):
    """minialex: AlexNet (Krizhevsky, Sutskever and Hinton, 2012) from the array up.

    \b
    Examples:
      python cli.py train                     # train on the built-in dataset (no download)
      python cli.py train --data fashion-mnist --epochs 5
      python cli.py evaluate runs/latest/best.h5 --ten-crop
      python cli.py info --preset paper       # the per-layer table, 60,965,224 parameters
      python cli.py COMMAND --help            # every command has examples
    """
    ctx.obj = {"debug": debug}
    cpu.configure()      # every core, OpenBLAS held to one thread each, freed memory kept (cpu.py)


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------

@command("train")
@click.option("--data", default=None, metavar="SPEC",
              help="'builtin', 'fashion-mnist[:DIR]', an ImageNet-layout folder (train/ and val/ "
                   "with one folder per class) or a cache .h5 written by 'prepare'. "
                   "[default: builtin]")
@click.option("--preset", default=None, metavar="NAME",
              help="paper, mini, fashion or tiny. Default: fashion for Fashion-MNIST, else "
                   "paper with a GPU and mini without.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Default: 12 for mini/tiny on the built-in data (30 for paper), 24 for "
                   "fashion on Fashion-MNIST, 90 (the paper) otherwise "
                   "(minialex.train.setup.DEFAULT_EPOCHS); a cache counts as the data it was prepared from.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help=f"[default: {DEFAULTS['batch_size']}, §5; the data's recipe where there is one]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"Learning rate epsilon. [default: {DEFAULTS['lr']}, §5; the data's recipe]")
@click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=None,
              help=f"[default: {DEFAULTS['momentum']}, §5]")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=None,
              help=f"[default: {DEFAULTS['weight_decay']}, §5]")
@click.option("--decay-biases/--no-decay-biases", default=None,
              help="Apply weight decay to biases too (cuda-convnet2 and Caffe do not). "
                   "[default: off, or the checkpoint's with --resume]")
@click.option("--devices", default=None, metavar="D0[,D1]",
              help="Column 0's and column 1's device, e.g. cuda:0,cuda:1 or cpu:0,cpu:1; one "
                   "device holds both. Default: two GPUs, one GPU, or the CPU.")
@click.option("--precision", type=click.Choice(["fp32", "tf32"]), default="fp32", show_default=True,
              help="tf32: tensor-core matrix products on the GPU (no effect on the CPU).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help=f"Seeds weights, dropout, data order and augmentation. [default: {DEFAULTS['seed']}]")
@click.option("--out", default=None, metavar="DIR",
              help="Run folder (metrics.jsonl, last.h5, best.h5). Default: runs/<date>-<time>, "
                   "or the checkpoint's folder with --resume.")
@click.option("--resume", default=None, metavar="CHECKPOINT",
              help="Continue a run exactly from its last.h5 (or its folder).")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Background threads preparing batches (decode, crop, flip).")
@click.option("--schedule", type=click.Choice(["plateau", "step"]), default=None,
              help="plateau: lr / 10 when validation error stalls, at most 3 times (§5); "
                   "step: lr / 10 every --step-size epochs. [default: plateau; the data's recipe]")
@click.option("--patience", type=click.IntRange(min=1), default=None,
              help=f"Epochs without improvement before lr / 10. [default: {DEFAULTS['patience']}]")
@click.option("--step-size", type=click.IntRange(min=1), default=None,
              help=f"Epochs between lr / 10 with --schedule step. [default: {DEFAULTS['step_size']}; the data's recipe]")
@click.option("--limit-batches", type=click.IntRange(min=1), default=None,
              help="At most this many training batches per epoch (quick runs).")
@click.option("--limit-val-batches", type=click.IntRange(min=1), default=None,
              help="At most this many validation batches per epoch.")
@click.option("--train-images", type=click.IntRange(min=1), default=None,
              help="Use this many training images (the built-in set draws that many; "
                   "other data keeps that many, spread over the classes).")
@click.option("--val-images", type=click.IntRange(min=1), default=None,
              help="Likewise for the validation split.")
@click.option("--lr-scaling", type=click.Choice(["none", "linear"]), default=None,
              help="Under mpiexec: linear multiplies --lr by the number of processes, reached "
                   "after a few epochs of warm-up (Goyal et al. 2017). [default: none]")
@click.option("--base-size", type=click.IntRange(min=1), default=None,
              help="Side the images are stored at; training crops --preset's input size from it "
                   "at random places. Default: the data's recipe, else the paper's 256:224 (§2: 58 "
                   "for mini's 51x51 crops).")
@click.option("--without", multiple=True, metavar="TRICK",
              type=click.Choice(["relu", "lrn", "overlap", "dropout", "augmentation", "columns"]),
              help="Leave out one of the paper's tricks, to measure it (repeatable): relu (tanh "
                   "units), lrn, overlap (2x2 pooling), dropout, augmentation, columns (one "
                   "column). docs/ablation.md has what each costs on Fashion-MNIST.")
@click.option("--no-progress", is_flag=True, help="No progress bars (for logs).")
def train_command(no_progress, without, **options):
    """Train AlexNet with SGD as in §5 of the paper.

    With no options: the built-in dataset (ten classes of shapes, generated, no download), the
    preset that suits the machine, and a run folder under runs/. It prints per-epoch validation
    top-1/top-5 error and writes a checkpoint every epoch. Ctrl-C saves and stops; --resume
    continues exactly where it stopped.

    \b
    Examples:
      python cli.py train
      python cli.py train --data fashion-mnist --epochs 5 --out runs/fmnist
      python cli.py train --resume runs/fmnist/last.h5 --epochs 8
      python cli.py train --data /data/imagenet --preset paper --devices cuda:0,cuda:1 --workers 8
      mpiexec -n 2 python -m mpi4py cli.py train     # data-parallel: batch 128 per process
    """
    check_folder_path(options["out"] or ".")       # not under a file: one line, not a traceback
    world = distributed.world()
    config = TrainConfig(progress=not no_progress, without=without or None, **options)
    result = train(config, echo=click.echo, world=world)
    if result.stopped == "interrupted":     # 130 after Ctrl-C, 143 after SIGTERM (stop_flag.py)
        sys.exit(result.exit_status or EXIT_INTERRUPTED)


# --------------------------------------------------------------------------------------------
# evaluate, predict
# --------------------------------------------------------------------------------------------

@command("evaluate")
@click.argument("checkpoint")
@click.option("--data", default=None, metavar="SPEC",
              help="Dataset to test on (same forms as train --data). Default: the checkpoint's.")
@click.option("--split", type=click.Choice(["val", "test", "train"]), default="val", show_default=True,
              help="val: the split training chose its schedule and best.h5 on (Fashion-MNIST: "
                   "5,000 images held out of the training set); test: images training never "
                   "looked at, for a final figure (Fashion-MNIST's 10,000; a folder's test/).")
@click.option("--ten-crop", is_flag=True,
              help="Average the softmax of 10 patches: corners, centre and their reflections (§4.1).")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--devices", default=None, metavar="D0[,D1]")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Test only this many images.")
def evaluate_command(checkpoint, data, split, ten_crop, batch_size, workers, devices, limit):
    """Top-1 and top-5 error of a checkpoint on a dataset split.

    \b
    Examples:
      python cli.py evaluate runs/20261126-150000/best.h5
      python cli.py evaluate runs/fmnist/best.h5 --data fashion-mnist --ten-crop
      python cli.py evaluate runs/fmnist/best.h5 --split test
    """
    tm, result = evaluate_checkpoint(checkpoint, data, split, ten_crop, batch_size, workers,
                                     parse_devices(devices), limit)
    click.echo(result.table(f"{tm.path} (AlexNet '{tm.model.preset}') on "
                            f"{data or tm.data_spec} {split}"))


@command("predict")
@click.argument("checkpoint")
@click.argument("images", nargs=-1, required=True)
@click.option("--ten-crop", is_flag=True, help="Average the softmax of 10 patches (§4.1).")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--devices", default=None, metavar="D0[,D1]")
def predict_command(checkpoint, images, ten_crop, top, devices):
    """The most probable classes of each image, with their probabilities.

    IMAGES are image files, or folders standing for the image files in them. Images are
    preprocessed as in training and testing: shorter side scaled to the stored size, central
    square, centre crop of the model's input size, training mean subtracted. A file that cannot
    be read is named on its own line and the others are still predicted; the exit status is then 1.

    \b
    Examples:
      python cli.py predict runs/fmnist/best.h5 shoe.png shirt.jpg
      python cli.py predict runs/latest/best.h5 photos/
    """
    _, preds, bad = predict_files(checkpoint, images, top, ten_crop, parse_devices(devices))
    for path, p in preds:
        click.echo(format_top5(path, p))
    for _, reason in bad:
        click.echo(f"error: {reason}", err=True)
    if bad:
        sys.exit(EXIT_USER_ERROR)


# --------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------

def _cpu_convolutions(preset) -> str:
    """Which convolutions the CPU computes by Winograd's minimal filtering, with which filter and
    from which batch (conv_cpu.winograd_batch)."""
    p = get_preset(preset)
    sides = p.spatial_sizes()
    wide = {}                                       # kernel size -> [(layer, batch)]
    for layer in p.layers(1000):
        if layer.kernel:
            batch = conv_cpu.winograd_batch((layer.kernel,) * 2, (layer.stride,) * 2,
                                            layer.outputs, layer.inputs, (sides[layer.name],) * 2)
            if batch is not None:
                wide.setdefault(layer.kernel, []).append((layer.name, batch))
    if not wide:
        return "convolutions on the CPU: im2col + GEMM (functional/conv.py)"
    parts = []
    for r, layers in sorted(wide.items(), reverse=True):
        m = winograd.FILTERS[r].m
        parts.append(f"{', '.join(name for name, _ in layers)} by Winograd's F({m}x{m}, {r}x{r}) "
                     f"at batches of {max(batch for _, batch in layers)} and up")
    return f"convolutions on the CPU: im2col + GEMM; {'; '.join(parts)} (functional/winograd.py)"


@command("info")
@click.option("--preset", default="paper", show_default=True, help="paper, mini, fashion or tiny.")
@click.option("--num-classes", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--devices", default=None, metavar="D0[,D1]",
              help="Devices to show for the columns. Default: this machine's.")
@click.option("--data", default=None, metavar="SPEC",
              help="Also list the options 'train --preset ... --data SPEC' settles on when no "
                   "other is given (the data's recipe, else the paper's).")
@click.option("--figure", default=None, metavar="PNG",
              help="Also draw the paper's Figure 2 for the preset (both columns, every layer's "
                   "shape, the crossings) from the layer table, into this file.")
def info_command(preset, num_classes, devices, data, figure):
    """The network layer by layer: output shape, parameters, neurons, device and crossings.

    Also states the choices the paper leaves open: 224 or 227 input, where fc8 lives, the LRN
    convention, the dropout form, the initialisation, the stored image size, the mean and the
    PCA lighting scale.

    \b
    Examples:
      python cli.py info                      # the paper's net: 60,965,224 parameters
      python cli.py info --preset mini --num-classes 10
      python cli.py info --preset fashion --data fashion-mnist   # and the options a run takes
      python cli.py info --figure figure2.png                    # Figure 2, drawn from the table
    """
    if figure is not None:
        check_output(figure, what="the figure")
    d0, d1 = parse_devices(devices) or default_devices()
    click.echo(table(preset, num_classes))
    click.echo(f"devices here (--devices): column 0 on {d0}, column 1 on {d1}, fc8 on {d0}"
               + (" (one device: the crossings are no-op copies, and the two columns run together as grouped layers over the same weights, each conv with its ReLU as one op, models/placement.py)" if d0 == d1 else ""))
    click.echo(f"{_cpu_convolutions(preset)}; this CPU: {cpu.summary()}")
    click.echo("dropout: the paper's form (x mask at training, x 0.5 at test, §4.2); "
               "SGD: v <- 0.9 v - 0.0005 lr w - lr grad, w <- w + v (§5), biases not decayed")
    size = get_preset(preset).input_size
    base = base_size_for(size)
    click.echo(f"data: images stored {base}x{base} for {size}x{size} crops (the paper's 256:224 "
               f"ratio, §2{'; 227 crops need 259, not 256' if size == 227 else ''}); a per-channel "
               "mean RGB subtracted, not the paper's mean image (position independent); PCA "
               "lighting alpha ~ N(0, 0.1) times the eigenvalues of the training pixels' RGB "
               "covariance on the [0, 1] scale (§4.1)")
    for (kind, name), options in RECIPES.items():
        if name == preset:
            said = [f"images stored {v}x{v} for the {size}x{size} crops, not {base}x{base} "
                    "(smaller shifts)" if k == "base_size" else f"{k} {v}"
                    for k, v in options.items()]
            click.echo(f"{kind} on '{name}' takes a measured recipe, not the paper's lr 0.01, "
                       f"batch 128 and plateau schedule (they underfit there; "
                       "minialex.train.setup.RECIPES): "
                       + ", ".join(said) + f", {default_epochs(kind, name)} epochs")
    if data is not None:
        config = TrainConfig(data=data, preset=preset)
        from_recipe = settle(config)          # as train settles them (train/setup.py)
        shown = {k: v for k, v in config.resolved().items()
                 if k in ("epochs", "batch_size", "lr", "momentum", "weight_decay", "decay_biases",
                          "schedule", "patience", "step_size", "seed", "base_size")}
        click.echo(f"train --preset {preset} --data {data} settles on: "
                   + ", ".join(f"{k} {v}" + (" (the data's recipe)" if k in from_recipe else "")
                               for k, v in shown.items() if v is not None))
    if figure is not None:
        save_figure(draw_figure2(preset, num_classes), figure)
        click.echo(f"wrote {figure}: Figure 2 of the '{preset}' preset, drawn from its layer table")


# --------------------------------------------------------------------------------------------
# Figures: filters, neighbors, plot
# --------------------------------------------------------------------------------------------

@command("filters")
@click.argument("checkpoint")
@click.option("--out", default="filters.png", show_default=True, help="PNG file to write.")
@click.option("--zoom", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Pixels per kernel pixel.")
def filters_command(checkpoint, out, zoom):
    """conv1's kernels as an image grid, one block per column: the paper's Figure 3.

    In the paper one column's kernels come out largely colour-agnostic and the other's
    colour-specific (§6.1); the command prints how colourful each column's kernels are.

    \b
    Example:
      python cli.py filters runs/20261126-150000/best.h5 --out filters.png
    """
    check_output(out, reads=[checkpoint], what="the picture")     # never over the checkpoint
    cols, grayscale = conv1_kernels(checkpoint)
    shape = "x".join(str(s) for s in cols[0].shape[1:])
    if cols[0].shape[1] == 1:      # a grey preset ('fashion'): conv1 reads the channels' mean
        save_filters(cols, out, zoom=zoom, caption="a grey model: one input channel")
        click.echo(f"wrote {out}: {sum(len(c) for c in cols)} kernels of {shape} in {len(cols)} "
                   "blocks: the model reads grey images (the mean of R, G and B), so its "
                   "kernels have one channel and no colour")
        return
    if grayscale:      # R = G = B in every image: only the sum of a kernel's channels acts
        cols = [c.sum(axis=1, keepdims=True) for c in cols]
        save_filters(cols, out, zoom=zoom,
                     caption="grayscale data: each kernel drawn as the sum of its 3 channels")
        click.echo(f"wrote {out}: {sum(len(c) for c in cols)} kernels of {shape} in {len(cols)} "
                   "blocks, each drawn as the sum of its three channels: the training images "
                   "are grayscale (R = G = B), so only that sum acts and there is no colour")
        return
    save_filters(cols, out, zoom=zoom)
    shares = ", ".join(f"column {i} {100 * colourfulness(c):.0f}%" for i, c in enumerate(cols))
    click.echo(f"wrote {out}: {sum(len(c) for c in cols)} kernels of {shape} in "
               f"{len(cols)} blocks; share of kernel energy that is colour: {shares}")


def _data_path(spec, checkpoint) -> str:
    """The file or folder a data spec reads ('fashion-mnist:DIR' reads DIR), by default the
    checkpoint's own data; '' when there is none to name (the built-in set, a bad checkpoint)."""
    if spec is None:
        try:
            spec = read_extra(checkpoint).get("data", {}).get("spec")
        except (CheckpointError, OSError):
            return ""
    spec = str(spec or "")
    return spec.partition(":")[2] if spec.startswith("fashion-mnist:") else spec


@command("neighbors")
@click.argument("checkpoint")
@click.argument("images", nargs=-1)
@click.option("--data", default=None, metavar="SPEC",
              help="Whose training images to search. Default: the checkpoint's data.")
@click.option("--out", default="neighbors.png", show_default=True, help="The neighbours grid.")
@click.option("--top5-out", default="top5.png", show_default=True, help="The top-5 picture.")
@click.option("-k", "--count", type=click.IntRange(min=1), default=6, show_default=True,
              help="Neighbours per query.")
@click.option("--search", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Training images to search.")
@click.option("--queries", type=click.IntRange(min=1), default=5, show_default=True,
              help="Validation images to use when no IMAGE is given.")
@click.option("--devices", default=None, metavar="D0[,D1]")
def neighbors_command(checkpoint, images, data, out, top5_out, count, search, queries, devices):
    """Figure 4: nearest training images in the last hidden layer, and top-5 predictions.

    For each query (the IMAGE files, or else a few validation images) it finds the training
    images whose last-hidden-layer activity (the 2 x fc vector fc8 reads) is nearest in
    Euclidean distance (§6.1), and draws the query's five most probable classes.

    \b
    Examples:
      python cli.py neighbors runs/20261126-150000/best.h5
      python cli.py neighbors runs/fmnist/best.h5 --data fashion-mnist boot.png
    """
    if os.path.abspath(out) == os.path.abspath(top5_out):
        raise ValueError(f"--out and --top5-out are both {out}: the second picture would replace "
                         "the first")
    reads = [checkpoint, *images, _data_path(data, checkpoint)]
    check_output(out, reads, what="the neighbours grid")
    check_output(top5_out, reads, "--top5-out", what="the top-5 picture")
    r = neighbours(checkpoint, images, data, count, search, queries, devices=parse_devices(devices))
    save_neighbours(r["queries"], r["neighbours"], out)
    save_top5(r["queries"], r["top5"], top5_out, true_labels=r["truth"],
              titles=[t or os.path.basename(n) for t, n in zip(r["truth"], r["names"])])
    for name, labels in zip(r["names"], r["neighbour_labels"]):
        click.echo(f"{name}: nearest training images are {', '.join(labels)}")
    click.echo(f"wrote {out} and {top5_out}")


@command("plot")
@click.argument("run_dir")
@click.option("--out", default=None, help="PNG file. Default: RUN_DIR/curves.png.")
def plot_command(run_dir, out):
    """Training curves of a run: loss, top-1/top-5 error and learning rate against epochs.

    \b
    Example:
      python cli.py plot runs/20261126-150000
    """
    path = os.path.join(run_dir, "metrics.jsonl") if os.path.isdir(run_dir) else run_dir
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: give a run folder written by 'train'")
    records, cut = read_log(path)       # LogError: the file and the line of a damaged line
    if not records:
        raise ValueError(f"{path} is empty: the run has not logged a step yet")
    if cut is not None:
        click.echo(f"note: {path} line {cut} is cut off (the run was stopped while writing it); "
                   f"plotting the {len(records)} records before it", err=True)
    out = check_output(out or os.path.join(os.path.dirname(path) or ".", "curves.png"),
                       reads=[path], what="the curves")
    save_training_curves(records, out, title=os.path.basename(os.path.realpath(os.path.dirname(
        os.path.abspath(path)))))
    click.echo(f"wrote {out}")


# --------------------------------------------------------------------------------------------
# gradcheck, bench
# --------------------------------------------------------------------------------------------

@command("gradcheck")
@click.option("--device", default=None, help="cpu or cuda:N. Default: a GPU if there is one.")
def gradcheck_command(device):
    """Finite-difference gradient check of every layer on this machine's backend.

    A quick health check of a new install (CuPy kernels included): float64, random upstream
    gradients; every op must agree with its numeric derivative to 1e-5.

    \b
    Examples:
      python cli.py gradcheck
      python cli.py gradcheck --device cuda:0
    """
    device = str(parse_devices(device)[0]) if device else str(default_device())
    results = run_checks(device)
    click.echo(format_table(results, device))
    if not all(r.passed for r in results):
        sys.exit(EXIT_USER_ERROR)


@command("bench")
@click.option("--preset", default=None, help="Default: paper on a GPU, mini on a CPU.")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Timed steps. [default: 20 on a GPU, 5 on a CPU]")
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "tf32", "both"]), default="fp32",
              show_default=True)
@click.option("--devices", default=None, metavar="D0[,D1]")
def bench_command(preset, batch_size, steps, warmup, precision, devices):
    """Time a training step (forward, backward, SGD update) on this machine.

    On a GPU, with benchmarks/gpu_step.py and PyTorch present, it runs minialex next to the
    same AlexNet in PyTorch + cuDNN at the same precision and prints the ratio.

    \b
    Examples:
      python cli.py bench                     # mini on a CPU, paper on a GPU
      python cli.py bench --preset paper --precision tf32 --batch-size 128
    """
    devs = parse_devices(devices)
    preset, _ = choose_preset(preset, devs)
    on_gpu = any(d.is_cuda for d in devs) if devs else gpu_available()
    reference = _gpu_step_module() if on_gpu else None
    if reference is not None:
        args = ["--precision", precision, "--batch", str(batch_size), "--steps",
                str(steps or 20), "--warmup", str(warmup), "--preset", preset]
        click.echo(f"python benchmarks/gpu_step.py {' '.join(args)}")
        sys.exit(reference.main(args) or 0)
    for prec in (["fp32", "tf32"] if precision == "both" else [precision]):
        if on_gpu:
            set_precision(prec)
        r = time_training_step(preset, batch_size, devs, steps or (20 if on_gpu else 5), warmup)
        click.echo(format_result(r, prec if on_gpu else None))
        if not on_gpu:
            break
    if not on_gpu:
        click.echo(f"on the CPU: {cpu.summary()}; python benchmarks/cpu_step.py times the same "
                   "step next to PyTorch's"
                   + (f"; --precision {precision} applies to GPU matrix products only, so this is "
                      "the CPU's float32" if precision != "fp32" else ""))


def _gpu_step_module():
    """benchmarks/gpu_step.py from the source tree, if it is there (it is not installed)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "benchmarks", "gpu_step.py")
    if not os.path.exists(path):
        return None
    spec = importlib.util.spec_from_file_location("minialex_gpu_step", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------
# prepare (the job is minialex.data.prepare.prepare_cache)
# --------------------------------------------------------------------------------------------

@command("prepare")
@click.argument("source", required=False)
@click.option("--imagenet", metavar="DIR", default=None,
              help="Read ImageNet from the official archives in DIR (ILSVRC2012_img_train.tar, "
                   "ILSVRC2012_img_val.tar, ILSVRC2012_devkit_t12.tar.gz) instead of SOURCE; "
                   "nothing is extracted to disk. Needs SciPy: pip install 'minialex[imagenet]'.")
@click.option("--out", required=True, metavar="FILE.h5", help="The HDF5 cache to write (or resume).")
@click.option("--base-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Side of the stored square images (§2: shorter side scaled, centre crop). "
                   "train resizes to what its preset needs on load: 259 for 'paper' (227 crops "
                   "at the paper's 256:224), 58 for 'mini', 38 for 'tiny'; storing that size "
                   "saves the resize and disk.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Keep only this many images per split, spread over the classes.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Built-in data only: which images.")
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs).")
def prepare_command(source, out, base_size, limit, seed, no_progress, imagenet):
    """Preprocess a dataset once into one HDF5 file that train/evaluate read with --data.

    SOURCE is 'builtin', 'fashion-mnist[:DIR]' or an ImageNet-layout folder. Images are stored as
    uint8 squares with labels, class names, and the training mean and RGB PCA (§2, §4.1).
    Streaming and resumable: after Ctrl-C, run the same command again to continue. Unreadable
    files are skipped and listed at the end.

    \b
    Examples:
      python cli.py prepare /data/imagenet --out imagenet256.h5
      python cli.py prepare --imagenet /data/ilsvrc2012 --out imagenet256.h5   # the .tar files
      python cli.py prepare fashion-mnist --out fmnist.h5 --base-size 58   # for --preset mini
      python cli.py train --data imagenet256.h5 --preset paper
    """
    if (source is None) == (imagenet is None):
        raise DataError("give either SOURCE or --imagenet DIR (the folder of the ILSVRC-2012 tars)")
    source = source or "ilsvrc2012:" + imagenet
    check_folder_path(out)
    if os.path.isdir(out):
        raise DataError(f"--out {out} is a folder: give a file name ending in .h5")
    if os.path.exists(out) and os.path.exists(source or "") and os.path.samefile(out, source):
        raise DataError(f"--out {out} is the source it reads: writing the cache there would "
                        "destroy it; choose another --out")
    if not out.lower().endswith((".h5", ".hdf5")):
        raise DataError(f"--out {out}: give a file name ending in .h5 (train and evaluate take a "
                        "cache by that ending)")
    options = {"limit": limit} if limit else {}
    if source == "builtin":
        options["seed"] = seed
    try:
        with sigterm_interrupts():      # SIGTERM stops it as Ctrl-C does: the cache resumes
            report = prepare_cache(source, out, base_size=base_size, progress=not no_progress,
                                   echo=click.echo, **options)
    except KeyboardInterrupt as e:
        click.echo(f"interrupted{' by SIGTERM' if isinstance(e, Terminated) else ''}: {out} is "
                   "incomplete; run the same command again to resume", err=True)
        sys.exit(EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED)
    click.echo(report.summary())


@command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--out", required=True, metavar="FILE.onnx", help="The ONNX file to write.")
def export_command(checkpoint, out):
    """Write a trained AlexNet, in test mode, as an ONNX graph of standard operators.

    The input 'image' is (N, 3, S, S) float32 RGB pixels 0-255 of a centre crop; the training
    mean and the preset's input scale are applied inside the graph. Outputs 'logits' and
    'probabilities'. Needs the onnx package: pip install 'minialex[onnx]'.

    \b
    Examples:
      python cli.py export runs/latest/best.h5 --out alexnet.onnx
    """
    click.echo(export_checkpoint(checkpoint, out))


if __name__ == "__main__":
    main()
