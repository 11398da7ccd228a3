"""Charts drawn on the server as inline SVG, each with a title, a description, axis labels
and the same numbers as a table beside it.

No chart library and no script: a page that draws its pictures on the server loads nothing
from anywhere else, works without JavaScript and is what a screen reader gets too. The
geometry is plain arithmetic on the data, so a test can check a drawn point against the
number it stands for (every point carries ``data-*`` attributes with its value).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

WIDTH = 760
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 16, 30, 46
#: Series colours: distinguishable for the common colour-vision deficiencies (Okabe-Ito).
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#7a5c00", "#000000")


def colour_class(index: int) -> str:
    """The CSS class of the index-th series colour (app.css defines them; the page's Content
    Security Policy refuses inline style attributes)."""
    return f"c{index % len(PALETTE)}"


#: How each mark is drawn next to a point, in legend order.
MARKS = {
    "champion": "champion",
    "challenger": "challenger",
    "rolled-back": "rolled back",
    "rejected": "rejected",
    "gate-failed": "failed a gate",
}


@dataclass(frozen=True)
class Point:
    x: str
    y: float | None
    #: An interval around the point (a confidence interval), drawn as a whisker.
    low: float | None = None
    high: float | None = None
    marks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Series:
    key: str
    name: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Event:
    """A moment on the x axis worth a vertical line (a profile change, a deployment)."""

    x: str
    label: str


@dataclass(frozen=True)
class LineChart:
    id: str
    title: str
    description: str
    x_label: str
    y_label: str
    #: The x axis, in order; points name their category.
    categories: tuple[str, ...]
    series: tuple[Series, ...]
    threshold: float | None = None
    threshold_label: str = ""
    zero_line: bool = False
    y_floor: float | None = None
    y_ceiling: float | None = None
    events: tuple[Event, ...] = ()
    height: int = 300
    value_format: str = "{:.4f}"


@dataclass(frozen=True)
class Bar:
    """One row of a timeline: waiting from ``wait_from`` to ``start``, running to ``end``
    (seconds from the timeline's origin)."""

    row: str
    wait_from: float
    start: float
    end: float
    state: str
    running: bool = False
    detail: str = ""


@dataclass(frozen=True)
class Timeline:
    id: str
    title: str
    description: str
    bars: tuple[Bar, ...]
    x_label: str = "seconds since the run started"
    notes: tuple[str, ...] = field(default_factory=tuple)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2 or 5 times a power of ten apart)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        high = low + 1.0
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if abs(value) >= 10 else f"{value:.3g}"


def _y_range(chart: LineChart) -> tuple[float, float]:
    values: list[float] = []
    for s in chart.series:
        for p in s.points:
            values += [v for v in (p.y, p.low, p.high) if v is not None and math.isfinite(v)]
    if chart.threshold is not None:
        values.append(chart.threshold)
    if chart.zero_line:
        values.append(0.0)
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (high - low) * 0.08 or 0.05
    low, high = low - pad, high + pad
    if chart.y_floor is not None:
        low = max(low, chart.y_floor)
    if chart.y_ceiling is not None:
        high = min(high, chart.y_ceiling)
    ticks = nice_ticks(low, high)
    return ticks[0], ticks[-1]


def _attrs(**values: object) -> str:
    return "".join(f' {k.replace("_", "-")}="{escape(str(v))}"' for k, v in values.items() if v is not None)


def _empty(chart_id: str, title: str, message: str) -> Markup:
    """A chart with nothing to draw says so, under its title, instead of drawing bare axes."""
    return Markup(
        f'<figure class="chart empty" id="{escape(chart_id)}"><figcaption class="chart-title">{escape(title)}'
        f'</figcaption><p class="muted">{escape(message)}</p></figure>'
    )


def render_line_chart(chart: LineChart) -> Markup:
    """The chart as a ``<figure>``: the SVG, its legend and a table of the same numbers."""
    if not chart.categories:
        return _empty(chart.id, chart.title, "Nothing to draw yet.")
    height = chart.height
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, height - _TOP - _BOTTOM
    low, high = _y_range(chart)
    step = plot_w / max(len(chart.categories), 1)
    xs = {c: _LEFT + step * (i + 0.5) for i, c in enumerate(chart.categories)}

    def y_of(value: float) -> float:
        clamped = min(max(value, low), high)
        return _TOP + plot_h * (1 - (clamped - low) / (high - low))

    out = _svg_open(
        chart.id, "lines", chart.title, chart.description, height, f' data-y-min="{low}" data-y-max="{high}"'
    )
    for tick in nice_ticks(low, high):
        if low - 1e-12 <= tick <= high + 1e-12:
            y = y_of(tick)
            out.append(
                f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                f'<text class="tick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>'
            )
    label_every = max(1, math.ceil(len(chart.categories) / 16))
    for i, category in enumerate(chart.categories):
        if i % label_every == 0 or i == len(chart.categories) - 1:
            out.append(
                f'<text class="tick" x="{xs[category]:.1f}" y="{_TOP + plot_h + 16}" text-anchor="middle">'
                f"{escape(category)}</text>"
            )
    out.append(
        f'<line class="axis" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{_TOP + plot_h}" y2="{_TOP + plot_h}"/>'
        f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{_TOP + plot_h}"/>'
        f'<text class="axis-label" x="{_LEFT + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle">'
        f"{escape(chart.x_label)}</text>"
        f'<text class="axis-label" transform="translate(14 {_TOP + plot_h / 2:.1f}) rotate(-90)"'
        f' text-anchor="middle">{escape(chart.y_label)}</text>'
    )
    if chart.zero_line and low < 0 < high:
        out.append(
            f'<line class="zero" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y_of(0):.1f}" y2="{y_of(0):.1f}"/>'
        )
    for event in chart.events:
        if event.x in xs:
            x = xs[event.x] - step / 2
            out.append(
                f'<g class="event"{_attrs(data_x=event.x, data_label=event.label)}>'
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP - 8}" y2="{_TOP + plot_h}"/>'
                f'<text x="{x + 3:.1f}" y="{_TOP - 12}">{escape(event.label)}</text></g>'
            )
    if chart.threshold is not None:
        y = y_of(chart.threshold)
        out.append(
            f'<g class="threshold" data-value="{chart.threshold}">'
            f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{WIDTH - _RIGHT - 4}" y="{y - 5:.1f}" text-anchor="end">'
            f"{escape(chart.threshold_label)}</text></g>"
        )
    for index, series in enumerate(chart.series):
        colour = colour_class(index)
        drawn = [p for p in series.points if p.y is not None and p.x in xs]
        out.append(f'<g class="series {colour}"{_attrs(data_series=series.key, data_name=series.name)}>')
        if len(drawn) > 1:
            path = " ".join(f"{xs[p.x]:.1f},{y_of(p.y):.1f}" for p in drawn if p.y is not None)
            out.append(f'<polyline class="line" points="{path}"/>')
        for p in drawn:
            assert p.y is not None
            x, y = xs[p.x], y_of(p.y)
            if p.low is not None and p.high is not None:
                out.append(
                    f'<line class="whisker"{_attrs(data_low=p.low, data_high=p.high)} x1="{x:.1f}" x2="{x:.1f}"'
                    f' y1="{y_of(p.low):.1f}" y2="{y_of(p.high):.1f}"/>'
                )
            marks = " ".join(p.marks)
            label = f"{series.name} at {p.x}: {chart.value_format.format(p.y)}" + (
                f" ({marks})" if marks else ""
            )
            out.append(
                f'<circle class="point {escape(marks)}"{_attrs(data_x=p.x, data_value=p.y, data_marks=marks)}'
                f' cx="{x:.1f}" cy="{y:.1f}" r="{6 if p.marks else 4}"><title>{escape(label)}</title></circle>'
            )
            if index == 0:
                for offset, mark in enumerate(p.marks):
                    out.append(
                        f'<text class="mark {escape(mark)}" x="{x:.1f}" y="{y - 10 - 12 * offset:.1f}"'
                        f' text-anchor="middle">{escape(MARKS.get(mark, mark))}</text>'
                    )
        out.append("</g>")
    out.append("</svg>")
    out.append('<ul class="legend chart-legend">')
    out += _legend(s.name for s in chart.series)
    if chart.threshold is not None:
        out.append(f'<li><span class="swatch dashed"></span>{escape(chart.threshold_label)}</li>')
    out.append("</ul>")
    out.append(_line_table(chart))
    out.append("</figure>")
    return Markup("".join(out))


def _line_table(chart: LineChart) -> str:
    by_series = [{p.x: p for p in s.points} for s in chart.series]
    has_interval = any(p.low is not None for s in chart.series for p in s.points)
    head = "".join(f'<th scope="col">{escape(s.name)}</th>' for s in chart.series)
    rows = []
    for category in chart.categories:
        cells, marks = [], set[str]()
        for points in by_series:
            p = points.get(category)
            value = "" if p is None or p.y is None else chart.value_format.format(p.y)
            if p is not None and has_interval and p.low is not None and p.high is not None:
                value += f" [{chart.value_format.format(p.low)}, {chart.value_format.format(p.high)}]"
            cells.append(f"<td>{escape(value)}</td>")
            marks |= set(p.marks if p else ())
        events = [e.label for e in chart.events if e.x == category]
        note = ", ".join([MARKS.get(m, m) for m in sorted(marks)] + events)
        rows.append(
            f'<tr><th scope="row">{escape(category)}</th>{"".join(cells)}<td>{escape(note)}</td></tr>'
        )
    return (
        f'<details class="chart-table"><summary>{escape(chart.title)}: the numbers</summary>'
        f'<div class="table-wrap"><table><thead><tr><th scope="col">{escape(chart.x_label)}</th>{head}'
        f'<th scope="col">Notes</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div></details>'
    )


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _svg_open(
    chart_id: str, kind: str, title: str, description: str, height: int, extra: str = ""
) -> list[str]:
    """A chart's figure and SVG opening: its title and description name the image for screen readers."""
    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    return [
        f'<figure class="chart" id="{escape(chart_id)}"><figcaption class="chart-title">{escape(title)}</figcaption>',
        f'<svg class="chart-svg {kind}" data-chart="{escape(chart_id)}" viewBox="0 0 {WIDTH} {height}" role="img"'
        f' aria-labelledby="{title_id} {desc_id}"{extra}>',
        f'<title id="{title_id}">{escape(title)}</title><desc id="{desc_id}">{escape(description)}</desc>',
    ]


def _x_ticks(ticks: Sequence[float], x_of: Callable[[float], float], top: float, bottom: float) -> list[str]:
    """Vertical grid lines with their values under the plot."""
    return [
        f'<line class="grid" x1="{x_of(t):.1f}" x2="{x_of(t):.1f}" y1="{top}" y2="{bottom}"/>'
        f'<text class="tick" x="{x_of(t):.1f}" y="{bottom + 16}" text-anchor="middle">{_fmt(t)}</text>'
        for t in ticks
    ]


def _legend(names: Iterable[str]) -> list[str]:
    """Legend items, one per series in the series' colours."""
    return [
        f'<li><span class="swatch coloured {colour_class(i)}"></span>{escape(name)}</li>'
        for i, name in enumerate(names)
    ]


def _x_label(x: float, height: int, label: str) -> str:
    return (
        f'<text class="axis-label" x="{x:.1f}" y="{height - 8}" text-anchor="middle">{escape(label)}</text>'
    )


def render_timeline(timeline: Timeline) -> Markup:
    """A Gantt-like chart: one row per stage, its wait (light) then its run (solid)."""
    if not timeline.bars:
        return _empty(timeline.id, timeline.title, "No stage has started yet.")
    row_h, label_w = 24, 150
    height = _TOP + row_h * len(timeline.bars) + _BOTTOM
    span = max(max(b.end for b in timeline.bars), 1.0)
    ticks = nice_ticks(0.0, span, 6)
    span = ticks[-1]
    plot_w = WIDTH - label_w - _RIGHT

    def x_of(seconds: float) -> float:
        return label_w + plot_w * min(max(seconds, 0.0), span) / span

    out = _svg_open(timeline.id, "timeline", timeline.title, timeline.description, height)
    bottom = _TOP + row_h * len(timeline.bars)
    out += _x_ticks(ticks, x_of, _TOP - 4, bottom)
    out.append(_x_label(label_w + plot_w / 2, height, timeline.x_label))
    for i, bar in enumerate(timeline.bars):
        y = _TOP + row_h * i
        state = bar.state.lower()
        wait, run = bar.start - bar.wait_from, bar.end - bar.start
        label = f"{bar.row}: waited {_duration(wait)}, ran {_duration(run)}" + (
            " so far" if bar.running else ""
        )
        out.append(
            f'<g class="bar state-{escape(state)}"{_attrs(data_stage=bar.row, data_wait=round(wait, 3), data_start=round(bar.start, 3), data_duration=round(run, 3), data_state=bar.state)}>'
            f"<title>{escape(label + (': ' + bar.detail if bar.detail else ''))}</title>"
            f'<text class="row-label" x="{label_w - 8}" y="{y + 16}" text-anchor="end">{escape(bar.row)}</text>'
        )
        if wait > 0:
            out.append(
                f'<rect class="wait" x="{x_of(bar.wait_from):.1f}" y="{y + 6}" height="{row_h - 12}"'
                f' width="{max(x_of(bar.start) - x_of(bar.wait_from), 0.5):.1f}"/>'
            )
        out.append(
            f'<rect class="run" x="{x_of(bar.start):.1f}" y="{y + 3}" height="{row_h - 6}"'
            f' width="{max(x_of(bar.end) - x_of(bar.start), 2):.1f}"/>'
            f'<text class="dur" x="{min(x_of(bar.end) + 4, WIDTH - _RIGHT - 40):.1f}" y="{y + 16}">{escape(_duration(run))}</text></g>'
        )
    out.append("</svg>")
    out.append(
        '<ul class="legend chart-legend"><li><span class="swatch timeline-wait"></span>waiting (queue, gate or the stage before)</li>'
        '<li><span class="swatch state-succeeded"></span>ran</li><li><span class="swatch state-failed"></span>failed</li>'
        '<li><span class="swatch state-running"></span>running</li></ul>'
    )
    rows = "".join(
        f'<tr><th scope="row">{escape(b.row)}</th><td>{escape(b.state)}</td><td>{escape(_duration(b.start - b.wait_from))}</td>'
        f"<td>{escape(_duration(b.start))}</td><td>{escape(_duration(b.end - b.start))}{' so far' if b.running else ''}</td></tr>"
        for b in timeline.bars
    )
    out.append(
        f'<details class="chart-table"><summary>{escape(timeline.title)}: the numbers</summary><div class="table-wrap"><table>'
        '<thead><tr><th scope="col">Stage</th><th scope="col">State</th><th scope="col">Waited</th>'
        f'<th scope="col">Started after</th><th scope="col">Duration</th></tr></thead><tbody>{rows}</tbody></table></div></details>'
    )
    out.append("</figure>")
    return Markup("".join(out))


def duration_text(seconds: float | None) -> str:
    return "" if seconds is None else _duration(seconds)


def categories_of(series: Sequence[Series]) -> tuple[str, ...]:
    """Every x value the series name, in first-seen order."""
    seen: dict[str, None] = {}
    for s in series:
        for p in s.points:
            seen.setdefault(p.x, None)
    return tuple(seen)


@dataclass(frozen=True)
class BarGroup:
    """One row of a paired bar chart: a name and one value per side (None: not measured)."""

    row: str
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class PairedBars:
    """Horizontal bars, one row per item and one bar per side, for side-by-side comparisons
    (a candidate's feature importance beside the champion's)."""

    id: str
    title: str
    description: str
    sides: tuple[str, ...]
    rows: tuple[BarGroup, ...]
    x_label: str
    value_format: str = "{:.4f}"


def render_paired_bars(chart: PairedBars) -> Markup:
    if not chart.rows:
        return _empty(chart.id, chart.title, "Nothing to draw yet.")
    label_w, bar_h = 150, 12
    group_h = bar_h * len(chart.sides) + 10
    height = _TOP + group_h * len(chart.rows) + _BOTTOM
    values = [v for r in chart.rows for v in r.values if v is not None and math.isfinite(v)]
    ticks = nice_ticks(min([0.0, *values]), max([0.0, *values]) or 1.0, 5)
    low, high = ticks[0], ticks[-1]
    plot_w = WIDTH - label_w - _RIGHT

    def x_of(value: float) -> float:
        return label_w + plot_w * (min(max(value, low), high) - low) / (high - low)

    bottom = _TOP + group_h * len(chart.rows)
    out = _svg_open(chart.id, "bars", chart.title, chart.description, height)
    out += _x_ticks(ticks, x_of, _TOP - 4, bottom)
    out.append(_x_label(label_w + plot_w / 2, height, chart.x_label))
    for i, group in enumerate(chart.rows):
        y = _TOP + group_h * i
        out.append(
            f'<g class="bar-group"{_attrs(data_row=group.row)}>'
            f'<text class="row-label" x="{label_w - 8}" y="{y + group_h / 2 + 3:.1f}" text-anchor="end">'
            f"{escape(group.row)}</text>"
        )
        for j, (side, value) in enumerate(zip(chart.sides, group.values, strict=True)):
            if value is None:
                continue
            x0, x1 = sorted((x_of(0.0), x_of(value)))
            colour = colour_class(j)
            label = f"{group.row}, {side}: {chart.value_format.format(value)}"
            out.append(
                f'<rect class="side {colour}"{_attrs(data_side=side, data_value=value)}'
                f' x="{x0:.1f}" y="{y + 4 + bar_h * j}" width="{max(x1 - x0, 1):.1f}" height="{bar_h - 2}">'
                f"<title>{escape(label)}</title></rect>"
            )
        out.append("</g>")
    out.append("</svg>")
    out.append('<ul class="legend chart-legend">')
    out += _legend(chart.sides)
    out.append("</ul>")
    head = "".join(f'<th scope="col">{escape(s)}</th>' for s in chart.sides)
    rows = "".join(
        f'<tr><th scope="row">{escape(g.row)}</th>'
        + "".join(f"<td>{'' if v is None else escape(chart.value_format.format(v))}</td>" for v in g.values)
        + "</tr>"
        for g in chart.rows
    )
    out.append(
        f'<details class="chart-table"><summary>{escape(chart.title)}: the numbers</summary>'
        f'<div class="table-wrap"><table><thead><tr><th scope="col">Feature</th>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div></details></figure>"
    )
    return Markup("".join(out))


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval against a gate on one number line (the AUC
    delta, its bootstrap interval and the largest drop that still passes)."""

    id: str
    title: str
    description: str
    label: str
    value: float
    low: float | None
    high: float | None
    threshold: float
    threshold_label: str
    value_format: str = "{:+.4f}"


def render_interval(chart: Interval) -> Markup:
    height, label_w = 120, 24
    numbers = [chart.value, chart.threshold, 0.0] + [v for v in (chart.low, chart.high) if v is not None]
    span = (max(numbers) - min(numbers)) or 0.02
    ticks = nice_ticks(min(numbers) - span * 0.15, max(numbers) + span * 0.15, 6)
    low, high = ticks[0], ticks[-1]
    plot_w = WIDTH - label_w - _RIGHT
    axis_y = 80

    def x_of(value: float) -> float:
        return label_w + plot_w * (min(max(value, low), high) - low) / (high - low)

    fmt = chart.value_format.format
    out = _svg_open(chart.id, "interval", chart.title, chart.description, height)
    out.append(f'<line class="axis" x1="{label_w}" x2="{WIDTH - _RIGHT}" y1="{axis_y}" y2="{axis_y}"/>')
    out += _x_ticks(ticks, x_of, _TOP, axis_y)
    out.append(
        f'<line class="zero" x1="{x_of(0):.1f}" x2="{x_of(0):.1f}" y1="{_TOP - 10}" y2="{axis_y}"/>'
        f'<g class="threshold" data-value="{chart.threshold}"><line x1="{x_of(chart.threshold):.1f}"'
        f' x2="{x_of(chart.threshold):.1f}" y1="{_TOP - 10}" y2="{axis_y}"/>'
        f'<text x="{x_of(chart.threshold) + 4:.1f}" y="{_TOP - 14}">{escape(chart.threshold_label)}</text></g>'
    )
    y = (_TOP + axis_y) / 2
    if chart.low is not None and chart.high is not None:
        out.append(
            f'<line class="whisker"{_attrs(data_low=chart.low, data_high=chart.high)} x1="{x_of(chart.low):.1f}"'
            f' x2="{x_of(chart.high):.1f}" y1="{y}" y2="{y}"/>'
        )
    interval = (
        f" [{fmt(chart.low)}, {fmt(chart.high)}]" if chart.low is not None and chart.high is not None else ""
    )
    out.append(
        f'<circle class="point estimate"{_attrs(data_value=chart.value)} cx="{x_of(chart.value):.1f}" cy="{y}" r="6">'
        f"<title>{escape(chart.label)}: {escape(fmt(chart.value) + interval)}</title></circle>"
        f'<text class="axis-label" x="{label_w + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">'
        f"{escape(chart.label)}</text></svg>"
        f'<p class="chart-summary">{escape(chart.label)} {escape(fmt(chart.value))}'
        f"{escape(' (95% interval' + interval + ')' if interval else '')}; {escape(chart.threshold_label)}.</p>"
        "</figure>"
    )
    return Markup("".join(out))
