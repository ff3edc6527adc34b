"""What each of AlexNet's tricks is worth on Fashion-MNIST: the paper's claims in miniature.

    python benchmarks/ablation.py                       # 7 variants x 2 seeds, about 25 min on 2 cores
    python benchmarks/ablation.py --seeds 0 1 2 --epochs 12 --train-images 55000
    python benchmarks/ablation.py --report-only         # redraw the table and figure from results

Every run is ``python cli.py train --data fashion-mnist`` with the data's preset and crops (as
``info`` states them) at one fixed budget: the same training images, epochs, batch, learning rate
and drop for every variant. The variants start from the full recipe and leave out one
trick each (``train --without``):

    relu          tanh units instead of ReLU          §3.1: "six times faster" to 25% training error
    lrn           no local response normalisation     §3.3: LRN lowers top-1 error by 1.4%
    overlap       2x2 stride-2 pooling                §3.4: overlapping lowers top-1 by 0.4%
    dropout       no dropout on fc6 and fc7           §4.2: without it, "substantial overfitting"
    augmentation  centre crops only                   §4.1: without it, "substantial overfitting"
    columns       one column, half the kernels        §3.2: two columns lower top-1 by 1.7%

For each run it records the test error of best.h5 (chosen on the validation split, which is held
out of the training images), the best validation error, the last epoch's training error (with
dropout and augmentation, as the log prints it) and the first epoch whose validation error is at
most ``--target`` (Figure 1's measure, in epochs). Results go to ``--out``/results.json as they
come (an interrupted benchmark keeps what it has and skips finished runs when started again);
the table replaces the one between its markers in ``--doc`` (docs/ablation.md; the prose around
it stays) and the figure goes to ``--figure``.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

#: (name, what is left out, the paper's claim) in the table's order; "full" leaves out nothing.
VARIANTS = [
    ("full", (), "AlexNet as the recipe trains it"),
    ("relu", ("relu",), "§3.1: tanh needs about 6x the iterations to 25% training error"),
    ("lrn", ("lrn",), "§3.3: LRN lowers top-1 error by 1.4%"),
    ("overlap", ("overlap",), "§3.4: overlapping pooling lowers top-1 error by 0.4%"),
    ("dropout", ("dropout",), "§4.2: without dropout, substantial overfitting"),
    ("augmentation", ("augmentation",), "§4.1: without augmentation, substantial overfitting"),
    ("columns", ("columns",), "§3.2: two columns lower top-1 error by 1.7%"),
]


def run_one(name, without, seed, args) -> dict:
    """Train one variant with one seed; the numbers the table needs."""
    from minialex.train import TrainConfig, train
    out = os.path.join(args.out, f"{name}-seed{seed}")
    config = TrainConfig(data="fashion-mnist", epochs=args.epochs, seed=seed, out=out,
                         train_images=args.train_images, schedule="step", lr=args.lr,
                         batch_size=args.batch_size, step_size=args.step_size,
                         without=without or None, progress=False)
    start = time.perf_counter()
    train(config, echo=lambda line: print(f"  [{name} {seed}] {line}", flush=True))
    with open(os.path.join(out, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    epochs = [r for r in records if r["event"] == "epoch"]
    tested = [r for r in records if r["event"] == "test"][-1]
    reached = [r["epoch"] for r in epochs if r["val_top1_error"] <= args.target]
    return {"variant": name, "seed": seed, "without": list(without), "budget": budget_of(args),
            "test_error": tested["test_top1_error"],
            "best_val_error": min(r["val_top1_error"] for r in epochs),
            "train_error": epochs[-1]["train_top1_error"], "train_loss": epochs[-1]["train_loss"],
            "epochs_to_target": reached[0] if reached else None,
            "val_curve": [r["val_top1_error"] for r in epochs],
            "seconds": round(time.perf_counter() - start, 1)}


def budget_of(args) -> dict:
    return {"train_images": args.train_images, "epochs": args.epochs, "step_size": args.step_size,
            "target": args.target, "lr": args.lr, "batch_size": args.batch_size}


def summarise(results, args):
    """{variant: (mean, low, high) of test error, ...} and the markdown table."""
    rows, stats = [], {}
    full = [r["test_error"] for r in results if r["variant"] == "full"]
    full_mean = sum(full) / len(full) if full else None
    for name, _, claim in VARIANTS:
        mine = [r for r in results if r["variant"] == name]
        if not mine:
            continue
        test = [r["test_error"] for r in mine]
        mean = sum(test) / len(test)
        stats[name] = (mean, min(test), max(test))
        change = "" if name == "full" or full_mean is None else f"{100 * (mean - full_mean):+.1f}"
        reach = [r["epochs_to_target"] for r in mine]
        reach = ", ".join("-" if e is None else str(e) for e in reach)
        rows.append(f"| {name} | {100 * mean:.1f}% ({100 * min(test):.1f}–{100 * max(test):.1f}) "
                    f"| {change} | {100 * sum(r['best_val_error'] for r in mine) / len(mine):.1f}% "
                    f"| {100 * sum(r['train_error'] for r in mine) / len(mine):.1f}% | {reach} "
                    f"| {sum(r['seconds'] for r in mine) / len(mine) / 60:.1f} | {claim} |")
    seeds = sorted({r["seed"] for r in results})
    head = (f"| left out | test error, mean (range) | change (points) | best val error "
            f"| last train error | epochs to val ≤ {100 * args.target:.0f}% (per seed) "
            f"| minutes per run | the paper says |\n|---|---|---|---|---|---|---|---|")
    return stats, head + "\n" + "\n".join(rows), seeds


def draw(stats, results, path, title):
    """Bars of mean test error with the seeds' range, and the validation curves of seed 0."""
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    names = [n for n, _, _ in VARIANTS if n in stats]
    fig = Figure(figsize=(11, 4.2))
    ax, curves = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    means = [100 * stats[n][0] for n in names]
    low = [100 * (stats[n][0] - stats[n][1]) for n in names]
    high = [100 * (stats[n][2] - stats[n][0]) for n in names]
    colours = ["#444444" if n == "full" else "#4477aa" for n in names]
    ax.bar(range(len(names)), means, yerr=[low, high], color=colours, capsize=4)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(["full" if n == "full" else f"no {n}" for n in names], rotation=30)
    ax.set_ylabel("test top-1 error (%)")
    ax.set_ylim(min(means) - 3, max(means) + 2)
    ax.set_title("test error of best.h5: mean and range over seeds")
    first = min(r["seed"] for r in results)
    for name in names:
        run = next(r for r in results if r["variant"] == name and r["seed"] == first)
        curve = [100 * e for e in run["val_curve"]]
        curves.plot(range(1, len(curve) + 1), curve, label="full" if name == "full" else f"no {name}",
                    color="black" if name == "full" else None, linewidth=2 if name == "full" else 1,
                    marker="o", markersize=3)
    curves.set_xlabel("epoch")
    curves.set_ylabel("validation top-1 error (%)")
    curves.set_title(f"validation error, seed {first}")
    curves.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    FigureCanvasAgg(fig).print_png(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--step-size", type=int, default=6, help="epochs before lr / 10")
    # The stored runs' rate and batch (the recipe of their day; a batch of 64 came later).
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-images", type=int, default=12000)
    parser.add_argument("--target", type=float, default=0.15, help="validation error to reach")
    parser.add_argument("--only", nargs="+", default=None, help="variants to run (default all)")
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "ablation"))
    parser.add_argument("--doc", default=os.path.join(ROOT, "docs", "ablation.md"))
    parser.add_argument("--figure", default=os.path.join(ROOT, "docs", "ablation.png"))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    store = os.path.join(args.out, "results.json")
    results = json.load(open(store)) if os.path.exists(store) else []
    if results and args.report_only:       # the table says the budget the runs had
        for key, value in results[0]["budget"].items():
            setattr(args, key, value)
    elif any(r["budget"] != budget_of(args) for r in results):
        sys.exit(f"{store} holds runs of another budget ({results[0]['budget']}): give another "
                 "--out, or the same options")
    if not args.report_only:
        for seed in args.seeds:
            for name, without, _ in VARIANTS:
                if args.only and name not in args.only:
                    continue
                if any(r["variant"] == name and r["seed"] == seed for r in results):
                    continue
                print(f"{name}, seed {seed}", flush=True)
                results.append(run_one(name, without, seed, args))
                with open(store + ".tmp", "w") as f:
                    json.dump(results, f, indent=1)
                os.replace(store + ".tmp", store)
    stats, table, seeds = summarise(results, args)
    budget = (f"Fashion-MNIST, {args.train_images:,} training images, {args.epochs} epochs "
              f"(lr {args.lr:g}, / 10 after {args.step_size}; batch {args.batch_size}), seeds "
              f"{', '.join(map(str, seeds))}")
    import platform
    note = (f"{START}\n<!-- {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
            f"{os.cpu_count()} cores -->\n\n{budget}\n\n{table}\n{END}")
    write_between_markers(args.doc, note)
    draw(stats, results, args.figure, budget)
    print(note)


START, END = "<!-- table: written by benchmarks/ablation.py -->", "<!-- end of table -->"


def write_between_markers(path, block) -> None:
    """Put ``block`` in place of the old table in ``path`` (the prose around it stays), or
    write a file of its own."""
    text = open(path).read() if os.path.exists(path) else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = block + "\n"
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
