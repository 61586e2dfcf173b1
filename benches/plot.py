#!/usr/bin/env python3
"""benches/plot.py: chart of a benches/run.sh result.

Usage: plot.py [CSV [PNG]]
  CSV  default benches/results/latest.csv (written by run.sh next to latest.md)
  PNG  default benches/results/latest.png

Two horizontal bar panels per target: median req/s, and CPU µs per request
(the target's own processes). Uses matplotlib when importable
(`pip install matplotlib`), else gnuplot; exits non-zero when neither is
available.
"""

import csv
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results", "latest.csv")
dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "results", "latest.png")

rows = list(csv.DictReader(open(src)))
if not rows:
    sys.exit(f"plot.py: no rows in {src}")
names = [r["target"] for r in rows]
rps = [float(r["rps"]) for r in rows]
cpu = [float(r["cpu_us_per_req"]) for r in rows]
title = "gatehouse load benchmark (benches/run.sh)"


def colour(name):
    if name.startswith("nginx") or name == "direct":
        return "#7f7f7f"
    return "#1f77b4" if not name.endswith("-h2") else "#2ca02c"


def with_matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 0.5 * len(rows) + 1.8))
    y = list(range(len(rows)))[::-1]
    cols = [colour(n) for n in names]
    a.barh(y, rps, color=cols)
    a.set_yticks(y, names)
    a.set_xlabel("req/s (median, higher is better)")
    for yi, v in zip(y, rps):
        a.text(v, yi, " %.0f" % v, va="center", fontsize=8)
    b.barh(y, cpu, color=cols)
    b.set_yticks(y, [""] * len(y))
    b.set_xlabel("CPU µs per request (lower is better)")
    for yi, v in zip(y, cpu):
        b.text(v, yi, " %.1f" % v, va="center", fontsize=8)
    a.set_xlim(0, max(rps) * 1.18)
    b.set_xlim(0, max(cpu) * 1.18)
    fig.suptitle(title + "  (grey: nginx, blue: gatehouse HTTP/1.1, green: HTTP/2 over TLS)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


def with_gnuplot():
    if not shutil.which("gnuplot"):
        sys.exit("plot.py: neither matplotlib (pip install matplotlib) nor gnuplot is available")
    with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as d:
        for i, (n, r, c) in enumerate(zip(names, rps, cpu)):
            d.write(f'{i} "{n}" {r} {c}\n')
    script = f"""
set terminal pngcairo size 1200,{60 * len(rows) + 200}
set output "{dst}"
set multiplot layout 1,2 title "{title}"
set style fill solid
set boxwidth 0.6
set yrange [-0.5:{len(rows) - 0.5}] reverse
set ytics ()
set title "req/s (median)"
plot "{d.name}" using (0.5*$3):1:(0.5*$3):(0.3):ytic(2) with boxxyerror notitle
set title "CPU us per request"
set ytics format ""
plot "{d.name}" using (0.5*$4):1:(0.5*$4):(0.3) with boxxyerror notitle
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script.encode(), check=True)
    os.unlink(d.name)


try:
    import matplotlib  # noqa: F401

    with_matplotlib()
except ImportError:
    with_gnuplot()
print(dst)
