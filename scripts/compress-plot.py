#!/usr/bin/env python3
"""Draws perplexity against file size from the result tables in docs/compression.md
(no dependencies: reads the Markdown, writes SVG).

Every row of a table with model, type (or method), MiB and ΔPPL columns becomes a
point; each model gets its own panel (ΔPPL against tensor-data MiB, log scale), each
table its own colour (the tables were measured on different numbers of windows, named
by the section heading above each).

Usage: python3 scripts/compress-plot.py [docs/compression.md] [docs/compression-ppl-size.svg]
"""
import math
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def number(s):
    m = re.match(r"^[+]?(-?[0-9]+(?:\.[0-9]+)?)", s.replace("**", "").strip())
    return float(m.group(1)) if m else None


def read_points(path):
    """(model, label, MiB, ΔPPL, series) from every table with model/type/MiB/ΔPPL
    columns; series is the heading of the section holding the table."""
    points = []
    header = None
    section = ""
    for line in open(path, encoding="utf-8"):
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        if not line.startswith("|"):
            header = None
            continue
        row = cells(line)
        if header is None:
            header = [h.lower() for h in row]
            continue
        if set(row[0]) <= set("-: "):
            continue
        col = {h: i for i, h in enumerate(header)}
        need = ("model", "mib", "δppl")
        kind = next((h for h in ("type", "method") if h in col), None)
        if kind is None or any(n not in col for n in need):
            continue
        mib, dppl = number(row[col["mib"]]), number(row[col["δppl"]])
        if mib is None or dppl is None:
            continue
        label = re.sub(r"\s*\(.*\)$", "", row[col[kind]].replace("**", ""))
        points.append((row[col["model"]], label, mib, dppl, section))
    return points


def svg(points, out):
    models, series = [], []
    for p in points:
        if p[0] not in models:
            models.append(p[0])
        if p[4] not in series:
            series.append(p[4])
    pw, ph, pad_l, pad_b, pad_t, pad_r = 520, 360, 60, 50, 40, 20
    width = pad_l + pw + pad_r
    height = len(models) * (ph + pad_t + pad_b)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for mi, model in enumerate(models):
        pts = [p for p in points if p[0] == model]
        oy = mi * (ph + pad_t + pad_b) + pad_t
        xs = [p[2] for p in pts]
        ys = [max(p[3], 0.01) for p in pts]
        x0, x1 = min(xs) * 0.95, max(xs) * 1.05
        y0, y1 = math.log10(min(ys) / 1.5), math.log10(max(ys) * 1.5)

        def px(x):
            return pad_l + (x - x0) / (x1 - x0) * pw

        def py(y):
            return oy + ph - (math.log10(max(y, 0.01)) - y0) / (y1 - y0) * ph

        parts.append(f'<text x="{pad_l}" y="{oy - 12}" font-size="14" font-weight="bold">'
                     f'{model}: ΔPPL vs size (held-out text, vs F16)</text>')
        parts.append(f'<rect x="{pad_l}" y="{oy}" width="{pw}" height="{ph}" fill="none" '
                     f'stroke="#888"/>')
        e = math.floor(y0)
        while e <= y1:
            for m in (1, 2, 5):
                v = m * 10 ** e
                if y0 <= math.log10(v) <= y1:
                    y = py(v)
                    parts.append(f'<line x1="{pad_l}" x2="{pad_l + pw}" y1="{y:.1f}" '
                                 f'y2="{y:.1f}" stroke="#eee"/>')
                    parts.append(f'<text x="{pad_l - 6}" y="{y + 4:.1f}" '
                                 f'text-anchor="end">{v:g}</text>')
            e += 1
        step = 10 ** math.floor(math.log10(max(x1 - x0, 1e-9)))
        if (x1 - x0) / step < 4:
            step /= 2
        t = math.ceil(x0 / step) * step
        while t <= x1:
            x = px(t)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{oy}" y2="{oy + ph}" '
                         f'stroke="#eee"/>')
            parts.append(f'<text x="{x:.1f}" y="{oy + ph + 16}" text-anchor="middle">'
                         f'{t:g}</text>')
            t += step
        parts.append(f'<text x="{pad_l + pw / 2}" y="{oy + ph + 34}" text-anchor="middle">'
                     f'tensor data, MiB</text>')
        parts.append(f'<text x="14" y="{oy + ph / 2}" text-anchor="middle" '
                     f'transform="rotate(-90 14 {oy + ph / 2})">ΔPPL (log scale)</text>')
        for si, name in enumerate(series):
            color = COLORS[si % len(COLORS)]
            ly = oy + 16 + 14 * si
            parts.append(f'<circle cx="{pad_l + pw - 250}" cy="{ly - 4}" r="4" '
                         f'fill="{color}"/>')
            parts.append(f'<text x="{pad_l + pw - 242}" y="{ly}" fill="{color}">'
                         f'{escape(name[:40])}</text>')
        placed = []
        for _, label, x, y, sec in sorted(pts, key=lambda p: p[2]):
            color = COLORS[series.index(sec) % len(COLORS)]
            cx, cy = px(x), py(y)
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{color}"/>')
            # Move a label down until it clears the ones already placed nearby.
            ty = cy - 5
            while any(abs(ty - py_) < 12 and abs(cx - px_) < 110 for px_, py_ in placed):
                ty += 12
            placed.append((cx, ty))
            parts.append(f'<text x="{cx + 6:.1f}" y="{ty:.1f}" fill="{color}">'
                         f'{escape(label)} ({y:+.2f})</text>')
    parts.append("</svg>")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")


COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"]


def escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "compression.md")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        ROOT, "docs", "compression-ppl-size.svg")
    points = read_points(src)
    if not points:
        sys.exit(f"{src}: no table rows with model, type, MiB and ΔPPL")
    svg(points, out)
    print(f"{out}: {len(points)} points")


if __name__ == "__main__":
    main()
