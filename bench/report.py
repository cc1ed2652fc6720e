"""The results: rows of one table, printed, written as JSON, and drawn as a bar chart of ratios to NumPy."""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLUMNS = ("benchmark", "size", "dtype", "implementation", "median", "ratio")
COLORS = {
    "numpy": "#555555",
    "opreg tape": "#d62728",
    "opreg Tensor": "#ff7f0e",
    "torch": "#1f77b4",
    "autograd": "#2ca02c",
    "matmuls alone": "#9467bd",
}  # what the chart shows; the GEMM-rate floor is left to the table (on the tiny step it is 1e-4 of NumPy's time)


@dataclass
class Row:
    """One measured value; ``ratio`` is to the NumPy row of the same group (benchmark, size, dtype)."""

    benchmark: str
    size: str
    dtype: str
    implementation: str
    value: float
    unit: str
    ratio: float | None = None
    details: dict[str, object] = field(default_factory=dict)

    @property
    def group(self) -> tuple[str, str, str]:
        return self.benchmark, self.size, self.dtype

    def cells(self) -> tuple[str, ...]:
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}x"
        return self.benchmark, self.size, self.dtype, self.implementation, f"{self.value:.4g} {self.unit}", ratio


def add_ratios(rows: list[Row], reference: str = "numpy") -> None:
    """Fill each row's ratio to the reference row of its group, where the group has one."""
    base = {row.group: row.value for row in rows if row.implementation == reference}
    for row in rows:
        if row.group in base:
            row.ratio = row.value / base[row.group]


def table(rows: list[Row]) -> str:
    """The rows as an aligned plain-text table that is also valid Markdown."""
    lines = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]

    def fmt(cells: tuple[str, ...]) -> str:
        padded = (c.rjust(w) if i >= 4 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i >= 4 else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([fmt(lines[0]), rule, *(fmt(line) for line in lines[1:])])


def write_json(path: Path, rows: list[Row], extra: dict[str, object]) -> None:
    path.write_text(json.dumps({**extra, "rows": [asdict(row) for row in rows]}, indent=2) + "\n")


def plot(path: Path, rows: list[Row], title: str) -> None:
    """Grouped bars of each row's ratio to NumPy, log scale, one group per (benchmark, size, dtype)."""
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for row in rows:
        if row.ratio is not None:
            groups.setdefault(row.group, []).append(row)
    names = [name for name in COLORS if any(r.implementation == name for g in groups.values() for r in g)]
    width = 0.85 / len(names)
    fig, ax = plt.subplots(figsize=(max(10, 1.8 * len(groups)), 6.5))
    for j, name in enumerate(names):
        xs, ys = [], []
        for i, group_rows in enumerate(groups.values()):
            for row in group_rows:
                if row.implementation == name:
                    xs.append(i + (j - (len(names) - 1) / 2) * width)
                    ys.append(row.ratio)
        ax.bar(xs, ys, width, label=name, color=COLORS[name])
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(["\n".join([*textwrap.wrap(f"{b}: {s}", 18), d]) for b, s, d in groups], fontsize=8)
    ax.set_ylabel("ratio to NumPy (log scale; lower is faster / smaller)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=len(names))
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
