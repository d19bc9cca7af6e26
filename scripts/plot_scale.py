#!/usr/bin/env python3
"""Plots the scale table printed by `cargo bench --bench scale`.

    cargo bench --bench scale | tee scale.txt
    python3 scripts/plot_scale.py scale.txt docs/scale.png

Needs matplotlib (`pip install matplotlib`).
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(path):
    """The rows of the first Markdown table in the file, as lists of floats."""
    out = []
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line.startswith("|") or "---" in line:
            if out and not line.startswith("|"):
                break
            continue
        cells = [c.strip().replace(",", "") for c in line.strip("|").split("|")]
        if not cells[0].isdigit():
            continue  # the header
        out.append([float(c) if c.replace(".", "", 1).isdigit() else float("nan") for c in cells])
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    data = rows(src)
    n = [r[0] for r in data]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for col, label in [(1, "spawn + register, supervised"), (2, "bare tokio::spawn"),
                       (4, "snapshot()"), (5, "tasks()"), (6, "is_healthy(all)")]:
        scale = 1.0 if col <= 2 else 1e-3  # µs columns to ms
        left.plot(n, [r[col] * scale for r in data], marker="o", label=label)
    left.set(xscale="log", yscale="log", xlabel="tasks", ylabel="ms",
             title="Time by task count (log-log)")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    right.plot(n, [r[3] for r in data], marker="o", label="supervised")
    right.axhline(1024, color="grey", linestyle="--", label="target: 1 KiB")
    right.set(xscale="log", xlabel="tasks", ylabel="bytes",
              title="Memory per task beyond the user's future", ylim=(0, 2000))
    right.grid(True, alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main()
