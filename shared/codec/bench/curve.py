"""`lsic bench curve`: the learning curve (held-out PSNR and bpp per operating point against
training steps) from a training run's log.jsonl. Dashed lines mark learning-rate steps and the
start of quantization-aware fine-tuning (whose evaluations run the simulated int8 analysis)."""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log",
        required=True,
        nargs="+",
        help="runs/NAME/log.jsonl; several: one run continued in another folder or on another machine, whose "
        "earlier part may be this command's own table (docs/benchmarks/learning-curve*.txt)",
    )
    p.add_argument("--out", default="docs/benchmarks/learning-curve.png")


def read_rows(path: Path) -> list[dict]:
    """A training log's rows; a learning-curve table (this command's output) gives its evaluations.

    Run folders stay on the machine that trained them, while the table is committed, so a run
    resumed elsewhere from a package (`lsic train --init`) continues its curve from the table.
    """
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines or not lines[0].startswith("|"):
        return [json.loads(line) for line in lines]
    rows = []
    for line in lines[2:]:  # after the header and the |---| rule
        step, hours, rate, *cells = (c.strip() for c in line.strip().strip("|").split("|"))
        lr, _, qat = rate.partition(" ")
        points = [dict(zip(("bpp", "psnr"), map(float, c.split("/")), strict=True)) for c in cells]
        rows.append(
            {
                "step": int(step),
                "wall_s": float(hours) * 3600,
                "lr": None if lr == "-" else float(lr),
                "qat": qat == "QAT",
                "eval": [{"q": q, **point} for q, point in enumerate(points)],
            }
        )
    return rows


def latest_per_step(evals: list[dict]) -> list[dict]:
    """One evaluation per step, the one read last, in step order.

    A run resumed in its own folder keeps its whole log.jsonl, so a committed table and the log
    continuing it overlap; the log, read after the table, is the one that counts.
    """
    return sorted({e["step"]: e for e in evals}.values(), key=lambda e: e["step"])


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for log in args.log for row in read_rows(Path(log))]
    evals, lr, qat = [], None, False
    for row in rows:  # each evaluation with the learning rate (and QAT) of the steps before it
        lr, qat = row.get("lr", lr), row.get("qat", qat)
        if "eval" in row:
            evals.append({**row, "lr": lr, "qat": qat})
    if not evals:
        print("no evaluations in the log yet")
        return 1
    evals = latest_per_step(evals)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    n = len(evals[0]["eval"])
    for q in range(n):
        steps = [e["step"] for e in evals]
        a1.plot(steps, [e["eval"][q]["psnr"] for e in evals], marker="o", ms=3, label=f"q{q + 1}")
        a2.plot(steps, [e["eval"][q]["bpp"] for e in evals], marker="o", ms=3, label=f"q{q + 1}")
    a1.set(xlabel="training step", ylabel="held-out PSNR (dB)", title="Distortion")
    a2.set(xlabel="training step", ylabel="estimated bpp", title="Rate")
    changes = [
        b["step"]
        for a, b in itertools.pairwise(evals)
        if (a["lr"] and b["lr"] and a["lr"] != b["lr"]) or a["qat"] != b["qat"]
    ]
    for a in (a1, a2):
        a.grid(alpha=0.3)
        for step in changes:
            a.axvline(step, color="grey", ls="--", lw=0.8)
    a1.legend(ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print("| step | hours | lr | " + " | ".join(f"q{q + 1} bpp/PSNR" for q in range(n)) + " |")
    print("|---|---|---|" + "---|" * n)
    for e in evals:
        cells = " | ".join(f"{r['bpp']:.3f}/{r['psnr']:.2f}" for r in e["eval"])
        rate = (f"{e['lr']:g}" if e["lr"] else "-") + (" QAT" if e["qat"] else "")
        print(f"| {e['step']} | {e['wall_s'] / 3600:.2f} | {rate} | {cells} |")
    return 0
