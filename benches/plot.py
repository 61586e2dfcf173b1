#!/usr/bin/env python3
"""benches/plot.py: chart of a benches/bench.py result.

Usage: plot.py [JSON [PNG]]
  JSON  default benches/results/latest.json (written by bench.py beside latest.md)
  PNG   default benches/latest.png, the chart benches/README.md shows (bench.py
        itself writes benches/results/latest.png after every run)

Two horizontal bar panels, one bar per target: median req/s, and CPU µs per
request of the target's own processes, user and system time stacked. Needs
matplotlib (`pip install matplotlib`).
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
COLOURS = {"yardstick": "#7f7f7f", "peer": "#bcbd22", "pingora-floor": "#ff7f0e", "gatehouse": "#1f77b4",
           "h2": "#2ca02c"}


def load(path):
    """The per-target summary of a bench.py JSON result."""
    with open(path) as f:
        targets = json.load(f)["targets"]
    if not targets:
        sys.exit(f"plot.py: no targets in {path} (a --no-main run has no main table to chart)")
    return targets


def plot(targets, dst):
    """Draws the two panels into dst."""
    try:
        import matplotlib
    except ImportError:
        sys.exit("plot.py: matplotlib is not installed; install it with: pip install matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [t["target"] for t in targets]
    rps = [t["rps"] for t in targets]
    user = [t["user_us"] for t in targets]
    system = [t["sys_us"] for t in targets]
    colours = [COLOURS[t["group"]] for t in targets]
    y = list(range(len(targets)))[::-1]
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 0.45 * len(targets) + 1.8))
    a.barh(y, rps, color=colours)
    a.set_yticks(y, names)
    a.set_xlabel("req/s (median, higher is better)")
    a.set_xlim(0, max(rps) * 1.18)
    for yi, v in zip(y, rps):
        a.text(v, yi, " %.0f" % v, va="center", fontsize=8)
    b.barh(y, user, color=colours, label="user")
    b.barh(y, system, left=user, color=colours, alpha=0.45, hatch="//", label="system")
    b.set_yticks(y, [""] * len(y))
    b.set_xlabel("CPU µs per request, user + system (lower is better)")
    total = [u + s for u, s in zip(user, system)]
    b.set_xlim(0, max(total) * 1.22)
    for yi, u, s in zip(y, user, system):
        b.text(u + s, yi, " %.1f (%.1f + %.1f)" % (u + s, u, s), va="center", fontsize=8)
    b.legend(loc="lower right", fontsize=8)
    fig.suptitle("gatehouse load benchmark (benches/bench.py): grey nginx, olive haproxy/Envoy/Traefik, "
                 "orange the Pingora floor, blue gatehouse, green HTTP/2 over TLS", fontsize=10)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


def main():
    """Reads the JSON, writes the PNG, prints its path."""
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results", "latest.json")
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "latest.png")
    plot(load(src), dst)
    print(dst)


if __name__ == "__main__":
    main()
