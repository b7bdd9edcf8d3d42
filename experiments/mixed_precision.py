"""The study's epoch in float32, with bfloat16 parameters and a float32 state, and all in bfloat16.

Trains the study's model (784-200-10 MLP, batch 64) on Fashion-MNIST for 5 epochs with Adam
(lr 1e-3) and with momentum SGD (lr 0.01, momentum 0.9) at three settings: float32; bfloat16
parameters with a float32 optimizer state (``--param-dtype bfloat16 --state-dtype float32``);
bfloat16 parameters and state. Each run goes through the study's own ``train_and_evaluate`` (a
one-cell :func:`jaxmom.sweep.fit`, whose compiled epoch program later repeats reuse); seconds per
epoch are training after compilation, test evaluation excluded, the best of ``--repeats`` runs,
the settings interleaved so that a busy machine slows them alike. Writes ``--out/results.json``
and, with ``--docs``, the table between the markers in ``docs/mnist.md``.

    python experiments/mixed_precision.py --docs          # Debian's Fashion-MNIST, a few minutes
    python experiments/mixed_precision.py --source embedded --epochs 1 --out runs/mp   # smoke
"""

import argparse
import datetime
import json
import os
import platform
import re
from pathlib import Path

import jax

from jaxmom.studies.mnist import data, train
from jaxmom.studies.mnist.config import Config
from jaxmom.sweep import (
    add_compile_cache_flags,
    check_writable,
    configure_compile_cache,
    write_text,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "mnist.md"
START, END = "<!-- mixed-precision: start -->", "<!-- mixed-precision: end -->"
SETTINGS = {  # label: (param_dtype, state_dtype)
    "float32": ("float32", None),
    "bfloat16 params, float32 state": ("bfloat16", "float32"),
    "bfloat16 params and state": ("bfloat16", "bfloat16"),
}
OPTIMIZERS = {
    "adam 1e-3": ("adam", {"learning_rate": 1e-3}),
    "momentum 0.9 (sgd 0.01)": ("sgd", {"learning_rate": 1e-2, "momentum": 0.9}),
}


def measure(dataset, epochs: int, repeats: int) -> list[dict]:
    rows = {}
    for _ in range(repeats):
        for name, (optimizer, hparams) in OPTIMIZERS.items():
            for label, (param_dtype, state_dtype) in SETTINGS.items():
                config = Config(
                    optimizer,
                    hparams,
                    epochs=epochs,
                    param_dtype=param_dtype,
                    state_dtype=state_dtype,
                )
                record = train.train_and_evaluate(config, dataset).record
                seconds = record["train_seconds"] / epochs
                row = rows.setdefault((name, label), {"optimizer": name, "setting": label})
                row["seconds_per_epoch"] = min(row.get("seconds_per_epoch", seconds), seconds)
                row["test_accuracy"] = record["test_accuracy"]
                row["final_train_loss"] = record["final_train_loss"]
    return list(rows.values())


def table(rows: list[dict], dataset, epochs: int, repeats: int) -> str:
    when = datetime.date.today().isoformat()
    lines = [
        f"{dataset.source}, {epochs} epochs, batch 64, seed 0; seconds per epoch after compiling,"
        f" best of {repeats}; {platform.processor() or platform.machine()}, {os.cpu_count()} "
        f"cores, jax {jax.__version__} ({jax.default_backend()}), {when}:",
        "",
        "| optimizer | setting | test accuracy | final train loss | s / epoch | vs float32 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    base = {r["optimizer"]: r["seconds_per_epoch"] for r in rows if r["setting"] == "float32"}
    for r in rows:
        ratio = r["seconds_per_epoch"] / base[r["optimizer"]]
        lines.append(
            f"| {r['optimizer']} | {r['setting']} | {100 * r['test_accuracy']:.1f}% "
            f"| {r['final_train_loss']:.3f} | {r['seconds_per_epoch']:.2f} | {ratio:.2f}x |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=data.DATASETS, default="fashion_mnist")
    parser.add_argument("--source", choices=data.SOURCES, default="auto")
    parser.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/mixed_precision"))
    parser.add_argument("--docs", action="store_true", help="write the table into docs/mnist.md")
    add_compile_cache_flags(parser)
    args = parser.parse_args(argv)
    configure_compile_cache(args.compile_cache, prog="mixed_precision.py")
    check_writable(args.out)
    data_dir = args.data_dir if args.source in ("auto", "idx") else None
    dataset = data.load(args.dataset, args.source, data_dir)
    rows = measure(dataset, args.epochs, args.repeats)
    text = table(rows, dataset, args.epochs, args.repeats)
    write_text(args.out / "results.json", json.dumps(rows, indent=2) + "\n")
    print(text)
    if args.docs:
        page = DOCS.read_text(encoding="utf-8")
        block = f"{START}\n{text}\n{END}"
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
        if not pattern.search(page):
            raise SystemExit(f"{DOCS} has no {START} ... {END} block")
        write_text(DOCS, pattern.sub(lambda _: block, page))
        print(f"wrote {DOCS}")


if __name__ == "__main__":
    main()
