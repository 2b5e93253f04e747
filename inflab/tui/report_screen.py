"""The report screen: the session's results as a sortable table, two plots and the answer.

The answer the lab exists for — the cheapest configuration per million inferences that meets
the user's latency limit, and the fastest — sits beside the limit and the percentile it
applies to, and follows every edit. Rows come from :func:`inflab.report.session_rows`, read in
a thread (the store is on disk); everything shown is computed by :mod:`inflab.report`, so the
screen and ``inflab report`` never disagree.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Label, Select, Static, TabbedContent, TabPane
from textual_plot import HiResMode, PlotWidget

from .. import report
from .widgets import KeyBar

#: (row key, heading, format, sorted high-to-low first) — the columns in the order `s` visits them
COLUMNS: tuple[tuple[str, str, str, bool], ...] = (
    ("model", "Model", "{}", False),
    ("precision", "Prec", "{}", False),
    ("target", "Target", "{}", False),
    ("instance_type", "Instance", "{}", False),
    ("batch_size", "Batch", "{}", False),
    ("throughput_avg", "Samples/s", "{:,.1f}", True),
    ("throughput_pm", "±95%", "{}", False),
    ("latency_ms_p50", "p50 ms", "{:.2f}", False),
    ("latency_ms_p90", "p90 ms", "{:.2f}", False),
    ("latency_ms_p95", "p95 ms", "{:.2f}", False),
    ("latency_ms_p99", "p99 ms", "{:.2f}", False),
    ("models_x_workers", "Models×W", "{}", False),
    ("stable", "Stable?", "{}", False),
    ("quality", "Quality", "{}", False),
    ("harness", "Harness", "{}", False),
    ("price_per_hour", "$/h", "{:.4f}", False),
    ("cost_per_million", "$ per 1M", "{:.4f}", False),
)
SORTABLE = [key for key, *_ in COLUMNS if key != "throughput_pm"]  # a ±share reads, it does not sort
#: the table's groups, in order: the direct benchmarks (the instance's and the sweep's, compared with each other),
#: then each served deployment on its own (their rows are per offered request rate)
GROUPS: tuple[tuple[str, str, frozenset[str]], ...] = (
    # the heading stands in the model column (MODEL_WIDTH): short enough to be read whole
    ("direct", "Direct benchmarks", frozenset({"instance", "batch"})),
    ("torchserve", "TorchServe, per rate", frozenset({"torchserve"})),
    ("sagemaker", "SageMaker, per rate", frozenset({"sagemaker"})),
)
GROUP_KEY = "group-"  # the row key of a group's heading row
MARK = "mark"  # the first, narrow column: ★ cheapest, ⚡ fastest, ≈ within noise of one of them
MODEL_WIDTH = 26  # the full name is on the detail line
CHEAPEST, FASTEST, TIED = "★", "⚡", "≈"
PALETTE = ("cyan", "magenta", "yellow", "green", "bright_red", "bright_blue", "white", "bright_green")
LIMIT_HELP = "The limit is a number of milliseconds, e.g. 50 (empty: no limit)"
TABS = Binding.Group("Table/Plots", compact=True)
#: below this many rows the limit and percentile boxes go compact (no border) and the answer scrolls
SHORT = 36


def parse_limit(text: str) -> float | None:
    """The latency limit typed by the user: empty is no limit; ``50``, ``12.5`` or ``50 ms``
    is a limit; anything else raises ValueError with the sentence to show."""
    text = text.strip().lower().removesuffix("ms").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(LIMIT_HELP) from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{LIMIT_HELP}; it must be more than 0")
    return value


def cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    if key == "stable":
        return "yes" if value else "no"
    if key == "harness" and row.get("validity"):
        return f"{value} {row['validity']}"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def series(rows: list[dict[str, Any]], measure: str) -> dict[str, list[tuple[int, float]]]:
    """``measure`` against batch size, one line per (instance type, target, precision) —
    and model family when the session measured more than one; several runs of one batch
    size are averaged. Failed and unmeasured rows are left out, and so are the served model's
    (per request rate, not per batch size: they are in the table)."""
    ok = [r for r in rows if report.is_ok(r) and not r.get("served") and r.get(measure) is not None]
    families = {r.get("family") for r in ok}
    points: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in ok:
        parts = ([r.get("family") or "?"] if len(families) > 1 else []) + [
            r["instance_type"],
            r["target"],
            r["precision"],
        ]
        points[" · ".join(str(p) for p in parts)][r["batch_size"]].append(r[measure])
    return {
        label: [(b, sum(v) / len(v)) for b, v in sorted(by_batch.items())] for label, by_batch in sorted(points.items())
    }


class ResultsTable(DataTable):
    """The results, a row at a time; ← and → scroll sideways a whole column at a time (the first
    columns, which say what the row is, stay put)."""

    def _edges(self) -> list[int]:
        """Where each scrolling column starts, in the scrolled part of the table."""
        x, edges = 0, []
        for column in self.ordered_columns[self.fixed_columns :]:
            edges.append(x)
            x += column.get_render_width(self)
        return edges

    def action_cursor_right(self) -> None:
        if self.cursor_type != "row":
            return super().action_cursor_right()
        after = [e for e in self._edges() if e > self.scroll_x]
        self.scroll_to(x=min(after[0] if after else self.max_scroll_x, self.max_scroll_x), animate=False)

    def action_cursor_left(self) -> None:
        if self.cursor_type != "row":
            return super().action_cursor_left()
        before = [e for e in self._edges() if e < self.scroll_x]
        self.scroll_to(x=before[-1] if before else 0, animate=False)


def empty_sentence(name: str) -> str:
    return (
        f"No results in session {name} yet. Measure the model with `inflab run --name {name} --until benchmark`, "
        f"or run the sweep over instance types and batch sizes with `inflab run --name {name} --until report` "
        "(or run those steps in the wizard). Results appear here as they are stored."
    )


class ReportScreen(Screen):
    """One session's report. ``escape``/``q`` goes back to where it was opened from."""

    BINDINGS = [
        Binding("s", "sort_next", "Sort"),
        Binding("S", "sort_reverse", "Reverse sort"),
        Binding("l", "focus_limit", "Latency limit"),
        Binding("p", "focus_percentile", "Percentile"),
        Binding("1", "tab('tab-table')", "The table", group=TABS),
        Binding("2", "tab('tab-plots')", "The plots", group=TABS),
        Binding("f5", "reload", "Reload"),
        Binding("escape,q", "close", "Back"),
    ]
    KEYBAR_SECONDARY = ("sort_reverse", "reload")
    VERTICAL_BREAKPOINTS = [(0, "-short"), (SHORT, "-tall")]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]

    def __init__(self, store, name: str):
        super().__init__()
        self.store = store
        self.session_name = name
        self.rows: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.price_note = ""
        self.loaded = False
        self.sort_key: str | None = None
        self.descending = False
        self.limit_ms: float | None = None
        self.percentile = "p90"
        self.saved_view_shown = False
        self._saving = threading.Lock()  # one save at a time, and the last one writes the newest choice
        self.recommendation: report.Recommendation | None = None
        self.on_frontier: list[bool] = []
        #: what the plots show now (label -> points), for tests and screen readers
        self.plotted: dict[str, dict[str, list[tuple[int, float]]]] = {}

    # -- layout ------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="report"):
            with Horizontal(id="report-controls"):
                with Vertical(id="limit-box"):
                    yield Label("Latency limit (ms)", classes="section")
                    yield Input(placeholder="no limit", id="limit")
                    yield Static("", id="limit-error", markup=False)
                with Vertical(id="percentile-box"):
                    yield Label("applies to", classes="section")
                    yield Select(
                        [(p, p) for p in report.PERCENTILES], value=self.percentile, allow_blank=False, id="percentile"
                    )
                yield Static("Loading the results…", id="recommendation", markup=False)
            yield Static("", id="report-empty", markup=False)
            with TabbedContent(id="report-tabs", initial="tab-table"):
                with TabPane("1 Table", id="tab-table"):
                    yield ResultsTable(id="report-table", cursor_type="row", zebra_stripes=True, fixed_columns=2)
                    yield Static("", id="report-detail", markup=False)
                    yield Static("", id="report-notes", markup=False)
                with TabPane("2 Plots", id="tab-plots"):
                    with Horizontal(id="report-plots"):
                        yield PlotWidget(id="plot-throughput", allow_pan_and_zoom=False)
                        yield PlotWidget(id="plot-latency", allow_pan_and_zoom=False)
                    yield Static("", id="plot-legend")
        yield KeyBar()

    def on_mount(self) -> None:
        self.title = "inflab"
        self.sub_title = f"{self.session_name} · report"
        self.query_one("#report-empty").display = False
        for plot in self.query(PlotWidget):
            plot.set_xlabel("batch size")
        self.query_one("#plot-throughput", PlotWidget).border_title = "Throughput (samples/s) against batch size"
        self.query_one(DataTable).focus()
        self.action_reload()

    # -- loading ----------------------------------------------------------------------
    def action_reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="report-load", exit_on_error=False)
    def _load(self) -> None:
        try:
            rows, warnings = report.session_rows(self.store, self.session_name)
            note = self._price_note(rows, report.session_region(self.store, self.session_name))
            view = report.saved_view(self.store, self.session_name)
        except Exception as e:  # a store it cannot read: one line, not a crash
            self.app.call_from_thread(self._failed, f"Could not read the results: {e.__class__.__name__}: {e}")
            return
        self.app.call_from_thread(self._loaded, rows, warnings, note, view)

    @work(thread=True, exclusive=True, group="report-save", exit_on_error=False)
    def _save_view(self) -> None:
        """The limit and percentile, kept with the session for the next time the report opens. Each
        save writes the screen's choice as it is when the save runs, one save at a time: saves started
        by quick changes (typing a limit, then a percentile) cannot land out of order."""
        try:
            with self._saving:
                report.save_view(self.store, self.session_name, self.limit_ms, self.percentile)
        except Exception as e:  # the store could not be written: the screen goes on, and says so
            self.app.call_from_thread(
                self.notify, f"The limit and percentile were not saved: {e}", severity="warning", markup=False
            )

    @staticmethod
    def _price_note(rows: list[dict[str, Any]], region: str | None = None) -> str:
        """Where each price comes from, its date and the region it lists; what the sandbox's numbers are worth."""
        notes = [report.price_note(src, region, types=True) for src in report.price_sources(rows)]
        if notes:
            notes.append("$ per 1M inferences = $/h ÷ (samples/s × 3,600) × 1,000,000.")
        elif rows:
            notes.append("No prices: no row ran on a priced instance type.")
        if any(r.get("sandbox") for r in rows if report.is_ok(r)):
            notes.append(
                "Sandbox rows ran on this machine's CPU: a priced one is costed as the type it stands in for, "
                "so its cost only illustrates."
            )
        return " ".join(notes)

    def _failed(self, line: str) -> None:
        self.query_one("#recommendation", Static).update(line)

    def _loaded(
        self, rows: list[dict[str, Any]], warnings: list[str], note: str, view: tuple[float | None, str] = (None, "p90")
    ) -> None:
        self.rows, self.warnings, self.price_note, self.loaded = list(rows), list(warnings), note, True
        if not self.saved_view_shown:  # the limit and percentile chosen last time, once (a reload keeps the edits)
            self.saved_view_shown = True
            self.limit_ms, self.percentile = view
            self.query_one("#limit", Input).value = "" if self.limit_ms is None else f"{self.limit_ms:g}"
            self.query_one("#percentile", Select).value = self.percentile
        empty = not self.rows
        self.query_one("#report-empty", Static).update(empty_sentence(self.session_name) if empty else "")
        self.query_one("#report-empty").display = empty
        for wid in ("#report-controls", "#report-tabs"):
            self.query_one(wid).display = not empty
        self._recompute()

    # -- the answer --------------------------------------------------------------------
    @on(Input.Changed, "#limit")
    def _limit_changed(self, event: Input.Changed) -> None:
        error = self.query_one("#limit-error", Static)
        try:
            limit = parse_limit(event.value)
        except ValueError as e:
            error.update(str(e))
            return  # the last good limit stays in force
        error.update("")
        if limit != self.limit_ms:
            self.limit_ms = limit
            self._recompute()
            self._save_view()

    @on(Input.Submitted, "#limit")
    def _limit_submitted(self) -> None:
        self.query_one(DataTable).focus()

    @on(Select.Changed, "#percentile")
    def _percentile_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self.percentile:
            self.percentile = event.value
            self._recompute()
            self._save_view()

    def _recompute(self) -> None:
        if not self.loaded:
            return
        self.recommendation = report.recommend(self.rows, self.limit_ms, self.percentile)
        self.on_frontier = list(report.frontier(self.rows, self.percentile)) if self.rows else []
        self.query_one("#recommendation", Static).update(self._recommendation_text())
        notes = [self.price_note] + [f"⚠ {w}" for w in self.warnings]
        self.query_one("#report-notes", Static).update("\n".join(n for n in notes if n))
        self._fill_table()
        self._draw_plots()

    def _recommendation_text(self) -> Text:
        rec = self.recommendation
        text = Text()
        if rec is None:
            return text
        for i, line in enumerate(rec.lines):
            if i:
                text.append("\n")
            text.append(line, style="bold" if i == 0 else "")
        marks = []
        if rec.cheapest is not None:
            marks.append(f"{CHEAPEST} cheapest")
        if rec.fastest is not None:
            marks.append(f"{FASTEST} fastest")
        if rec.ties:
            marks.append(f"{TIED} within noise of a pick")
        if marks:
            text.append(
                "\n" + "   ".join(marks) + " in the table; dim rows are off the cost/latency frontier", style="italic"
            )
        for i, line in enumerate(report.deployment_lines(self.rows, self.limit_ms, self.percentile)):
            text.append("\n" + line.strip(), style="bold" if i == 0 else "")
        return text

    # -- the table ---------------------------------------------------------------------
    def _ordered(self) -> list[int]:
        """Row indices in display order (the sort is the report's: missing values last)."""
        index = list(range(len(self.rows)))
        if self.sort_key is None:
            return index
        tagged = [dict(r, _index=i) for i, r in enumerate(self.rows)]
        return [r["_index"] for r in report.sort_rows(tagged, self.sort_key, self.descending)]

    def _marks(self, row: dict[str, Any]) -> str:
        rec = self.recommendation
        if rec is None:
            return ""
        picked = (CHEAPEST if rec.cheapest is not None and rec.cheapest == row else "") + (
            FASTEST if rec.fastest is not None and rec.fastest == row else ""
        )
        return picked or (TIED if row.get("run_id") in rec.tied_runs() else "")

    def _fill_table(self) -> None:
        table = self.query_one(DataTable)
        keep = None
        if table.row_count:
            keep = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        table.clear(columns=True)
        table.add_column("", key=MARK, width=2)
        for key, heading, _, desc in COLUMNS:
            arrow = (" ▼" if self.descending else " ▲") if key == self.sort_key else ""
            table.add_column(heading + arrow, key=key, width=MODEL_WIDTH if key == "model" else None)
        order = self._ordered()
        groups = [
            (gid, title, [i for i in order if (self.rows[i].get("deployment") or "instance") in deps])
            for gid, title, deps in GROUPS
        ]
        groups = [g for g in groups if g[2]]
        headed = len(groups) > 1  # one kind of row (a sweep only): no headings
        for gid, title, members in groups:
            if headed:
                table.add_row(
                    Text(""),
                    Text(f"▸ {title} ({len(members)})", style="bold"),
                    *[Text("")] * (len(COLUMNS) - 1),
                    key=GROUP_KEY + gid,
                )
            self._add_rows(table, members)
        if keep is not None and keep in {str(i) for i in range(len(self.rows))}:
            table.move_cursor(row=table.get_row_index(keep), animate=False)
        self._show_detail()

    def _add_rows(self, table: DataTable, members: list[int]) -> None:
        for i in members:
            row = self.rows[i]
            style = ""
            if not report.is_ok(row):
                style = "red"
            elif i < len(self.on_frontier) and not self.on_frontier[i]:
                style = "dim"
            cells = [Text(self._marks(row), style="bold yellow")]
            for key, _, fmt, _ in COLUMNS:
                value = cell(row, key, fmt)
                if not report.is_ok(row) and key == "throughput_avg":
                    value = "FAILED"
                if key == "model" and row.get("served"):  # the served model, per offered rate: say so first
                    how = "endpoint" if row.get("deployment") == "sagemaker" else "served"
                    value = f"{how} {row.get('offered_rps') or 0:g}/s · {value}"
                if key == "model" and len(value) > MODEL_WIDTH:
                    value = value[: MODEL_WIDTH - 1] + "…"
                cells.append(Text(value, style=style, justify="right" if fmt != "{}" else "left"))
            table.add_row(*cells, key=str(i))

    def action_sort_next(self) -> None:
        at = SORTABLE.index(self.sort_key) + 1 if self.sort_key in SORTABLE else 0
        self._sort_by(SORTABLE[at % len(SORTABLE)])

    def action_sort_reverse(self) -> None:
        if self.sort_key is None:
            self._sort_by(SORTABLE[0])
        self.descending = not self.descending
        self._fill_table()

    def _sort_by(self, key: str) -> None:
        self.sort_key = key
        self.descending = next(desc for k, _, _, desc in COLUMNS if k == key)
        self._fill_table()

    @on(DataTable.HeaderSelected, "#report-table")
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        key = event.column_key.value
        if key not in SORTABLE:
            return
        if key == self.sort_key:
            self.action_sort_reverse()
        else:
            self._sort_by(key)

    @on(DataTable.RowHighlighted, "#report-table")
    def _row_highlighted(self) -> None:
        self._show_detail()

    def highlighted_row(self) -> dict[str, Any] | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return None if key is None or key.startswith(GROUP_KEY) else self.rows[int(key)]

    def _show_detail(self) -> None:
        row = self.highlighted_row()
        detail = self.query_one("#report-detail", Static)
        if row is None:
            detail.update("")
            return
        where = f"{row.get('instance_type')} · {row.get('target')} · {row.get('precision') or '-'} · batch {row.get('batch_size')}"
        if not report.is_ok(row):
            detail.update(Text(f"{row.get('status')}  ({where})", style="bold red"))
            return
        parts = [str(row.get("model")), where, f"run {row.get('run_id')}"]
        if row.get("weights"):
            parts.append(f"weights {row['weights']}")
        if row.get("repeats"):
            ci = row.get("throughput_ci95")
            parts.append(f"{row['repeats']} trial(s)" + (f", 95% CI {ci[0]:,.1f}–{ci[1]:,.1f} samples/s" if ci else ""))
        if row.get("stable") is False:
            parts.append(
                "not stable: its trials disagree"
                if (row.get("repeats") or 1) > 1
                else "not stable: throughput still moved when the run ended"
            )
        if row.get("interference") is not None and not row.get("served"):
            parts.append(
                f"{row.get('quality')}: other processes took {row['interference']:.0%} of the CPU while it measured"
            )
        if row.get("harness") == "loadgen":
            parts.append(f"measured by MLPerf LoadGen: {row.get('validity') or '?'}")
        if row.get("deployment") == "sagemaker":
            over, seen = row.get("overhead_ms_p50"), row.get("model_latency_ms")
            parts.append(
                f"SageMaker endpoint, {row.get('instance_count')} × {row.get('instance_type')} at "
                f"{row.get('offered_rps'):g} requests/s offered, {row.get('errors')} error(s)"
                + ("" if over is None else f", {over:+.2f} ms p50 against the direct run")
                + (
                    ""
                    if seen is None
                    else f", ModelLatency {seen:.2f} ms and OverheadLatency "
                    f"{row.get('overhead_latency_ms') or 0:.2f} ms (CloudWatch)"
                )
                + f", {'meets' if row.get('meets_limit') else 'over'} the {row.get('limit_ms'):g} ms p99 limit"
            )
        elif row.get("served"):
            over = row.get("overhead_ms_p50")
            parts.append(
                f"served by TorchServe at {row.get('offered_rps'):g} requests/s offered, {row.get('errors')} error(s)"
                + (
                    ""
                    if over is None
                    else f", overhead {over:+.2f} ms p50 vs the direct run {row.get('direct_run_id')}"
                )
                + f", {'meets' if row.get('meets_limit') else 'over'} the {row.get('limit_ms'):g} ms p99 limit"
            )
        detail.update(" · ".join(parts))

    # -- the plots ---------------------------------------------------------------------
    def _draw_plots(self) -> None:
        measure = f"latency_ms_{self.percentile}"
        wanted = {"plot-throughput": series(self.rows, "throughput_avg"), "plot-latency": series(self.rows, measure)}
        batches = sorted({r["batch_size"] for r in self.rows if report.is_ok(r) and r.get("batch_size") is not None})
        self.query_one("#plot-latency", PlotWidget).border_title = f"{self.percentile} latency (ms) against batch size"
        labels = sorted({label for lines in wanted.values() for label in lines})
        colours = {label: PALETTE[n % len(PALETTE)] for n, label in enumerate(labels)}
        self.plotted = {}
        for pid, lines in wanted.items():
            plot = self.query_one(f"#{pid}", PlotWidget)
            plot.clear()
            if batches:
                plot.set_xticks(batches)
                pad = max(1, (batches[-1] - batches[0]) * 0.05)
                plot.set_xlimits(batches[0] - pad, batches[-1] + pad)
            # Room above the highest point: a point on the axis's very edge is not drawn.
            top = max(
                [p[1] for points in lines.values() for p in points]
                + ([self.limit_ms] if pid == "plot-latency" and self.limit_ms is not None else []),
                default=0.0,
            )
            plot.set_ylimits(0, top * 1.15 if top > 0 else None)
            for label, points in lines.items():
                xs, ys = [p[0] for p in points], [p[1] for p in points]
                colour = colours[label]
                if len(points) > 1:
                    plot.plot(xs, ys, line_style=colour, hires_mode=HiResMode.BRAILLE, label=label)
                    plot.scatter(xs, ys, marker="●", marker_style=colour)
                else:  # one point draws no line: a marker carries the label
                    plot.scatter(xs, ys, marker="●", marker_style=colour, label=label)
            if pid == "plot-latency" and self.limit_ms is not None and batches:
                plot.plot(
                    [batches[0], batches[-1]],
                    [self.limit_ms, self.limit_ms],
                    line_style="red",
                    hires_mode=HiResMode.BRAILLE,
                    label=f"limit {self.limit_ms:g} ms",
                )
            self.plotted[pid] = lines
        # One legend under both plots (a legend inside a small plot hides its points).
        legend = Text("Lines: ")
        for label in labels:
            legend.append("━●━ ", style=colours[label]).append(label + "    ")
        if self.limit_ms is not None and batches:
            legend.append("━━━ ", style="red").append(f"your limit, {self.limit_ms:g} ms {self.percentile}")
        self.query_one("#plot-legend", Static).update(legend if labels else "Nothing measured to plot yet.")

    # -- focus and leaving ---------------------------------------------------------------
    def action_focus_limit(self) -> None:
        self.set_focus(self.query_one("#limit", Input))  # at once: keys typed right after `l` land in the box

    def action_focus_percentile(self) -> None:
        self.set_focus(self.query_one("#percentile", Select))

    def action_tab(self, tab: str) -> None:
        self.query_one("#report-tabs", TabbedContent).active = tab
        if tab == "tab-table":
            self.query_one(DataTable).focus()

    def on_resize(self, event: events.Resize) -> None:
        """On a short screen the limit and percentile boxes lose their borders (two rows each)."""
        short = event.size.height < SHORT
        self.query_one("#limit", Input).compact = short
        self.query_one("#percentile", Select).compact = short

    def action_close(self) -> None:
        self.app.pop_screen()
