"""The speed page's tables, from the JSON files that ``experiments/benchmark.py --out`` writes.

    python3 experiments/speed_table.py docs/benchmarks/2026-12-01-*.json

prints one Markdown table of seconds per row (one column per run) and one of the speed-ups against
their targets, so that no number on docs/speed.md is typed by hand.
"""

import argparse
import json
from pathlib import Path


def load(paths: list[Path]) -> list[dict]:
    runs = []
    for path in paths:
        try:
            run = json.loads(path.read_text())
            if not {"rows", "speedups", "machine"} <= set(run):
                raise KeyError("rows, speedups or machine missing")
        except (OSError, ValueError, KeyError) as e:
            raise SystemExit(
                f"{path}: not a benchmark.py result ({type(e).__name__}: {e})"
            ) from None
        run["name"] = path.stem
        runs.append(run)
    return runs


def cell(run: dict, row: str, field: str, spec: str) -> str:
    """``field`` of ``run``'s row named ``row``, formatted by ``spec``; "–" where it has none."""
    found = [r[field] for r in run["rows"] if r["row"] == row and field in r]
    return format(found[0], spec) if found else "–"


def tables(runs: list[dict]) -> str:
    names = [r["name"] for r in runs]
    head = "| row | configs | " + " | ".join(f"{n}: s" for n in names) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(runs)]
    rows = list({r["row"]: r for run in runs for r in run["rows"]}.values())  # every run's rows
    for row in rows:
        cells = [cell(run, row["row"], "seconds", ".3f") for run in runs]
        configs = "" if row.get("configs") is None else str(row["configs"])
        lines.append(f"| {row['row']} | {configs} | " + " | ".join(cells) + " |")
    lines += ["", "| speed-up | " + " | ".join(names) + " | target |"]
    lines.append("|---|" + "---:|" * len(runs) + "---:|")
    pairs = {pair: s["target"] for run in runs for pair, s in run["speedups"].items()}
    for pair, target in pairs.items():  # every run's ratios; "–" where a run has none
        got = [run["speedups"].get(pair) for run in runs]
        cells = [f"{s['speedup']:.2f}×" if s else "–" for s in got]
        lines.append(f"| {pair} | " + " | ".join(cells) + f" | {target}× |")
    first = [r["row"] for r in rows if "first_call_seconds" in r]
    if first:  # the first call in the process: compiles (or the compile cache's loads) included
        lines += ["", "| first call, compile included | " + " | ".join(names) + " |"]
        lines.append("|---|" + "---:|" * len(runs))
        for name in first:
            cells = [cell(run, name, "first_call_seconds", ".2f") for run in runs]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    machines = sorted({f"{r['machine']}; jax {r['jax']}, {r['device']}" for r in runs})
    lines += ["", "Machine: " + "; ".join(machines) + "."]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="benchmark.py JSON files, in column order")
    print(tables(load(ap.parse_args(argv).runs)))


if __name__ == "__main__":
    main()
