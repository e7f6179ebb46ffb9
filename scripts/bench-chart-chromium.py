#!/usr/bin/env python3
"""The peer figure of `cargo bench --bench chart`: the same chart (800x450, 10 series of
240 points, threshold, firing band, legend) as an SVG page, screenshotted by headless
Chromium, as a browser-based renderer (Grafana's image renderer) would draw it.

`python3 scripts/bench-chart-chromium.py [RUNS]` prints each run's wall time and the
median; the page and the screenshots are left in a temporary folder.
"""
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

W, H = 800, 450
L, R, T, B = 70, 20, 40, 50
PW, PH = W - L - R, H - T - B
COLOURS = ["#1f77b4"] + ["#787878"] * 9


def value(i, k):
    return 50 + 10 * math.sin(k / 20 + i) + i


def x(k):
    return L + PW * k / 239


def y(v):
    return T + PH * (1 - (v - 35) / 40)


def page():
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="DejaVu Sans">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="25" text-anchor="middle" font-size="20">HighLoad: node_load1 &gt; 55</text>',
           f'<rect x="{x(180)}" y="{T}" width="{x(239) - x(180)}" height="{PH}" fill="#d62728" fill-opacity="0.15"/>']
    for g in range(8):
        gx = L + PW * g / 7
        out.append(f'<line x1="{gx}" y1="{T}" x2="{gx}" y2="{T + PH}" stroke="#e1e1e1"/>')
        out.append(f'<text x="{gx}" y="{T + PH + 18}" text-anchor="middle" font-size="13">22:{10 + g * 7:02d}</text>')
    for v in range(40, 80, 10):
        out.append(f'<line x1="{L}" y1="{y(v)}" x2="{L + PW}" y2="{y(v)}" stroke="#e1e1e1"/>')
        out.append(f'<text x="{L - 8}" y="{y(v) + 4}" text-anchor="end" font-size="13">{v}</text>')
    for i in range(10):
        points = " ".join(f"{x(k):.1f},{y(value(i, k)):.1f}" for k in range(240))
        width, opacity = (3, 1) if i == 0 else (1, 0.45)
        out.append(f'<polyline points="{points}" fill="none" stroke="{COLOURS[i]}" '
                   f'stroke-width="{width}" stroke-opacity="{opacity}"/>')
    out.append(f'<line x1="{L}" y1="{y(55)}" x2="{L + PW}" y2="{y(55)}" stroke="#d62728" '
               'stroke-width="2" stroke-dasharray="8,5"/>')
    out.append(f'<rect x="{L + 8}" y="{T + 8}" width="260" height="80" fill="white" fill-opacity="0.85" stroke="#c8c8c8"/>')
    legend = [('node_load1{instance="host-0:9100"}', COLOURS[0]), ("9 other series", "#787878"),
              ("threshold 55", "#d62728"), ("firing", "#f4c7c7")]
    for j, (text, colour) in enumerate(legend):
        ly = T + 26 + j * 18
        out.append(f'<line x1="{L + 16}" y1="{ly - 4}" x2="{L + 34}" y2="{ly - 4}" stroke="{colour}" stroke-width="3"/>'
                   f'<text x="{L + 40}" y="{ly}" font-size="13">{text.replace("<", "&lt;")}</text>')
    out.append(f'<text x="{L + PW / 2}" y="{H - 8}" text-anchor="middle" font-size="13">Europe/Berlin</text></svg>')
    return '<!doctype html><html><body style="margin:0">' + "\n".join(out) + "</body></html>"


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    folder = Path(tempfile.mkdtemp(prefix="chart-chromium-"))
    html = folder / "chart.html"
    html.write_text(page())
    times = []
    for n in range(runs):
        shot = folder / f"shot{n}.png"
        start = time.monotonic()
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={W},{H}", f"--screenshot={shot}", html.as_uri()],
                       check=True, capture_output=True)
        times.append(time.monotonic() - start)
        print(f"run {n + 1}: {times[-1] * 1000:.0f} ms ({shot.stat().st_size} bytes)")
    print(f"median: {statistics.median(times) * 1000:.0f} ms; files in {folder}")


if __name__ == "__main__":
    main()
