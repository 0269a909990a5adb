"""Readable tables of benchmark results: aligned text for the terminal, Markdown for docs."""

from __future__ import annotations

from collections.abc import Sequence

from losskit.bench.results import CaseResult, ImplResult, Timing

__all__ = [
    "HEADER",
    "NOISY_MARK",
    "WIDE_IQR",
    "format_bytes",
    "format_time",
    "markdown_table",
    "noisy_ratio",
    "table_rows",
    "text_table",
]

HEADER = ["loss", "size", "impl", "fwd", "fwd+bwd", "peak mem", "throughput", "time ratio", "mem ratio"]

LEGEND = (
    "times: median per call [iqr = interquartile range / median]; peak mem: extra memory of one fwd+bwd; "
    "ratios: losskit / that baseline, same run (< 1: losskit faster / leaner)"
)


#: a timing whose interquartile range exceeds this fraction of its median is too noisy for a ratio
WIDE_IQR = 0.25
#: appended to a time ratio computed from such a timing
NOISY_MARK = "~"
NOISY_NOTE = (
    f"{NOISY_MARK}: not to be trusted: the loss's or the baseline's fwd+bwd interquartile range is over "
    f"{WIDE_IQR:.0%} of its median (a busy machine?); rerun with more --repeat / --min-run-time, or --threads 1"
)


def _wide(t: Timing | None) -> bool:
    return t is not None and t.median_s > 0 and t.iqr_s / t.median_s > WIDE_IQR


def noisy_ratio(case: CaseResult, impl: str) -> bool:
    """Whether the fwd+bwd time ratio of baseline ``impl`` comes from a timing too noisy to trust."""
    return _wide(case.main.forward_backward) or _wide(case.impl(impl).forward_backward)


def format_time(seconds: float) -> str:
    """``1.23 ms``-style, three significant digits."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_bytes(n: int) -> str:
    """``12.5 MiB``-style."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _time_cell(t: Timing | None) -> str:
    if t is None:
        return "-"
    spread = f" [iqr {100 * t.iqr_s / t.median_s:.0f}%]" if t.median_s > 0 else ""
    return format_time(t.median_s) + spread


def _mem_cell(r: ImplResult) -> str:
    m = r.memory
    if m is None:
        return "-"
    if m.status == "ok" and m.peak_bytes is not None:
        return format_bytes(m.peak_bytes)
    return m.status.upper()


def _row(case: CaseResult, r: ImplResult, first: bool) -> list[str]:
    head = [case.loss if first else "", case.size_label if first else "", r.impl]
    if r.status in ("oom", "error"):
        return head + [r.status.upper()] * 3 + ["-", "-", "-"]
    ratio = case.ratios.get(r.impl)
    fmt = lambda x: f"{x:.2f}x" if x is not None else "-"  # noqa: E731
    return head + [
        _time_cell(r.forward),
        _time_cell(r.forward_backward),
        _mem_cell(r),
        f"{r.throughput:.3g} {case.throughput_unit}/s" if r.throughput is not None else "-",
        (fmt(ratio.forward_backward) + (NOISY_MARK if noisy_ratio(case, r.impl) else "")) if ratio else "",
        fmt(ratio.memory) if ratio else "",
    ]


def table_rows(cases: Sequence[CaseResult]) -> list[list[str]]:
    """One row per implementation; the loss's row first in each case."""
    return [_row(c, r, i == 0) for c in cases for i, r in enumerate(c.impls)]


def _errors(cases: Sequence[CaseResult]) -> list[str]:
    return [f"{c.loss} {r.impl}: {r.error}" for c in cases for r in c.impls if r.error]


def text_table(cases: Sequence[CaseResult], *, title: str = "") -> str:
    """The aligned terminal table, with a legend and the error messages of failed rows."""
    rows = [HEADER] + table_rows(cases)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = [title] if title else []
    for k, r in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(LEGEND)
    if any(row[7].endswith(NOISY_MARK) for row in rows[1:]):
        lines.append(NOISY_NOTE)
    lines += [f"  ! {e}" for e in _errors(cases)]
    return "\n".join(lines)


def markdown_table(cases: Sequence[CaseResult]) -> str:
    """The same table in Markdown (for README / docs)."""
    rows = table_rows(cases)
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    if any(r[7].endswith(NOISY_MARK) for r in rows):
        out += ["", NOISY_NOTE]
    return "\n".join(out)
