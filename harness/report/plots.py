"""Figure data (diagrams.py) -> SVG, with matplotlib's object API (no pyplot state).

Colours are the Okabe-Ito set, which colour-blind readers tell apart; every
colour also differs in line style, marker or hatch, so a grey-scale print
keeps the distinctions. Text stays text (searchable, and a third of the size
of glyph outlines), in the reader's own sans-serif font: nothing is fetched.
"""

from __future__ import annotations

import io
import statistics
import textwrap
from typing import TYPE_CHECKING, Any

import matplotlib
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from harness.report.diagrams import CASE_FIGURES, SLANT, Attempts, CasePoints, Sequence, SocketTimeline

if TYPE_CHECKING:  # matplotlib.typing is new in 3.8; the project allows 3.7
    from matplotlib.typing import RcKeyType

BLACK, ORANGE, SKY, GREEN, BLUE, VERMILLION, PURPLE, GREY = (
    "#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#999999")
STATE_STYLE = {  # colour, hatch
    "ESTABLISHED": (GREEN, ""),
    "FIN_WAIT1": (ORANGE, ".."),
    "FIN_WAIT2": (ORANGE, "oo"),
    "CLOSING": (ORANGE, "xx"),
    "TIME_WAIT": (SKY, "//"),
    "CLOSE_WAIT": (PURPLE, "\\\\"),
    "LAST_ACK": (PURPLE, "++"),
    "gone": ("#FFFFFF", ""),
}
RC: dict[RcKeyType, Any] = {"svg.fonttype": "none", "font.family": "sans-serif", "font.size": 8.5, "axes.titlesize": 9.5,
                            "axes.spines.top": False, "axes.spines.right": False, "hatch.linewidth": 0.6}


def _svg(fig: Figure, salt: str) -> str:
    """The figure as SVG text; `salt` keeps element ids of figures inlined in one page apart."""
    buf = io.StringIO()
    with matplotlib.rc_context({**RC, "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


# --- the sequence diagram ---------------------------------------------------------

X = {"server": 0.32, "client": 0.78}
INGRESS = 0.075  # how far before the receiver's line a dropped segment ends


def _arrow_style(kind: str, dropped: bool) -> tuple[str, str]:
    if dropped:
        return VERMILLION, "--"
    return {"fin": (BLACK, "-"), "fin again": (BLUE, "-."), "rst": (PURPLE, ":")}.get(kind, (GREY, "-"))


def sequence_svg(seq: Sequence, title: str, salt: str) -> str:
    with matplotlib.rc_context(RC):
        # Heights in inches: title, the rows (0.34 each), then the legend and the note below them.
        rows, foot, head = seq.end_row + 2.5, 0.95, 0.35
        height = head + 0.34 * (rows + 1.6) + foot
        fig = Figure(figsize=(7.6, height))
        ax = fig.add_axes((0.0, foot / height, 1.0, 0.34 * (rows + 1.6) / height))
        ax.set_xlim(0, 1)
        ax.set_ylim(rows, -1.6)
        ax.axis("off")
        fig.text(0.0, 1 - 0.05 / height, title, va="top", fontsize=9.5)
        for side, x in X.items():
            ax.plot([x, x], [-0.7, seq.end_row + 1.2], color=BLACK, lw=1.2)
            who = f"{side}" + (" (closes first)" if side == seq.active else "")
            ax.text(x, -1.0, who, ha="center", va="bottom", fontweight="bold")
        for a in seq.arrows:
            receiver = "client" if a.sender == "server" else "server"
            x0, x1 = X[a.sender], X[receiver]
            colour, style = _arrow_style(a.kind, a.dropped)
            y0, y1 = a.row, a.row + SLANT
            if a.dropped or a.answered:  # neither reaches the receiver's TCP
                x_end = x1 - INGRESS if x1 > x0 else x1 + INGRESS
                y_end = y0 + SLANT * (x_end - x0) / (x1 - x0)
                ax.plot([x0, x_end], [y0, y_end], color=colour, ls=style, lw=1.3)
                ax.plot([x_end], [y_end], marker="X" if a.dropped else "o", ms=9 if a.dropped else 6,
                        color=colour, mec=BLACK, mew=0.5)
            else:
                ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                            arrowprops={"arrowstyle": "-|>", "color": colour, "ls": style, "lw": 1.3,
                                        "shrinkA": 0, "shrinkB": 0})
            label = a.label + ("  (dropped)" if a.dropped else "  (answered with a RST)" if a.answered else "")
            ax.text((x0 + x1) / 2, (y0 + y1) / 2 - 0.12, label, ha="center", va="bottom", fontsize=7.5,
                    color=BLACK, rotation=0)
            ax.text(0.01, y0 + SLANT / 2, f"{a.t:8.3f} s", ha="left", va="center", fontsize=7.5,
                    family="monospace", color=BLACK)
        for b in seq.breaks:
            for x in X.values():
                ax.plot([x - 0.015, x + 0.015], [b.row + 0.05, b.row - 0.05], color=BLACK, lw=0.8)
                ax.plot([x - 0.015, x + 0.015], [b.row + 0.25, b.row + 0.15], color=BLACK, lw=0.8)
            ax.text((X["server"] + X["client"]) / 2, b.row + 0.35, f"≈ {b.seconds:.2f} s later",
                    ha="center", va="center", fontsize=7.5, style="italic", color=GREY)
        if seq.time_wait:
            r0, r1, t0, t1 = seq.time_wait
            x = X["server"] - 0.03
            ax.fill_between([x - 0.012, x + 0.012], r0, r1 + SLANT / 2, facecolor=SKY, edgecolor=BLACK,
                            hatch="//", lw=0.6)
            ax.text(x - 0.03, (r0 + r1) / 2, f"TIME_WAIT {t1 - t0:.2f} s", rotation=90, ha="right",
                    va="center", fontsize=8)
            for row, _t in seq.restarts:
                ax.plot([x + 0.02], [row], marker=">", ms=5, color=VERMILLION, mec=BLACK, mew=0.4)
            ax.text(X["server"] + 0.02, r1 + SLANT / 2 + 0.05, f"TIME_WAIT over at {t1:.2f} s", ha="left",
                    va="top", fontsize=7.5)
        legend: list[Artist] = [Line2D([], [], color=BLACK, label="FIN"),
                  Line2D([], [], color=BLUE, ls="-.", label="FIN sent again"),
                  Line2D([], [], color=GREY, label="ACK"),
                  Line2D([], [], color=VERMILLION, ls="--", marker="X", mec=BLACK, mew=0.5,
                         label="dropped at the receiver's ingress")]
        if seq.time_wait:
            legend += [Patch(facecolor=SKY, edgecolor=BLACK, hatch="//", label="server in TIME_WAIT (agent)"),
                       Line2D([], [], ls="", marker=">", color=VERMILLION, mec=BLACK, mew=0.4,
                              label="TIME_WAIT timer restarted (agent)")]
        fig.legend(handles=legend, loc="lower left", bbox_to_anchor=(0.0, 0.36 / height), ncol=3, frameon=False,
                   fontsize=7.5, borderaxespad=0)
        fig.text(0.0, 0.03 / height, "Time runs down, one row per segment, not to scale; ≈ marks a pause and its "
                 f"length.\nTimes: seconds after the close, captured in the {seq.captured_at}'s namespace; "
                 "SEQ and ACK numbers relative to each side's SYN.", fontsize=7, color=BLACK)
        return _svg(fig, salt)


# --- the socket timeline ------------------------------------------------------------


def _attempt_lane(ax: Axes, y: float, a: Attempts, end: float) -> None:
    """Failing from the first try to the one that worked (hatched), then a dot where it worked."""
    if a.failing:
        ax.broken_barh([(a.failing.start, max(a.failing.end - a.failing.start, 1e-3))], (y - 0.25, 0.5),
                       facecolor="#F4C7A8", edgecolor=VERMILLION, hatch="xx", lw=0.6)
    words = (f"failed {a.failures} times, " if a.failures else "") + (
        f"worked at {a.ok_at:.2f} s" if a.ok_at is not None else "never worked")
    right = a.ok_at is not None and a.ok_at > end * 0.6
    x = a.ok_at if a.ok_at is not None else (a.failing.end if a.failing else 0.0)
    ax.text(x, y + 0.32, words, fontsize=7, va="bottom", ha="right" if right else "left",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})
    if a.ok_at is not None:
        ax.plot([a.ok_at], [y], marker="o", ms=6, color=GREEN, mec=BLACK, mew=0.6)


def timeline_svg(tl: SocketTimeline, title: str, salt: str) -> str:
    with matplotlib.rc_context(RC):
        # Fixed margins (the lane names are known): a layout engine would double the drawing time.
        fig = Figure(figsize=(7.6, 4.8))
        top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1.1, 2.0], "hspace": 0.1})
        fig.subplots_adjust(left=0.2, right=0.98, top=0.93, bottom=0.2)
        top.set_title(title, loc="left")
        if tl.timer:
            top.plot(*zip(*tl.countdown), color=BLUE, lw=1.2)
            top.plot(*zip(*tl.timer), ls="", color=BLUE, marker=".", ms=4,
                     label="TIME_WAIT timer as the kernel reported it (inet_diag)")
        if tl.timer_restarts:
            xs, ys = zip(*tl.timer_restarts)
            top.plot(xs, ys, ls="", marker="^", ms=6, color=VERMILLION, mec=BLACK, mew=0.5,
                     label="timer restarted by a FIN")
        top.set_ylabel("timer left (s)")
        top.set_ylim(bottom=0)
        if tl.timer:
            top.legend(loc="lower left", fontsize=7, frameon=False)
        else:
            top.text(0.5, 0.5, "the server's socket was never in TIME_WAIT", transform=top.transAxes,
                     ha="center", va="center", color=GREY)

        lanes = ["server socket", "bind() plain", "bind() SO_REUSEADDR", "server restart", "packets"]
        y = {name: len(lanes) - i for i, name in enumerate(lanes)}
        for span in tl.states:
            colour, hatch = STATE_STYLE.get(span.label, (GREY, ""))
            bottom.broken_barh([(span.start, max(span.end - span.start, 1e-3))], (y["server socket"] - 0.3, 0.6),
                               facecolor=colour, edgecolor=BLACK, hatch=hatch, lw=0.5)
        seen = list(dict.fromkeys(s.label for s in tl.states))
        _attempt_lane(bottom, y["bind() plain"], tl.bind_plain, tl.end)
        _attempt_lane(bottom, y["bind() SO_REUSEADDR"], tl.bind_reuseaddr, tl.end)
        _attempt_lane(bottom, y["server restart"], tl.restart, tl.end)
        bottom.plot(tl.fins, [y["packets"] + 0.15] * len(tl.fins), ls="", marker="|", ms=11, mew=1.5, color=BLUE)
        bottom.plot(tl.drops, [y["packets"] - 0.2] * len(tl.drops), ls="", marker="x", ms=6, mew=1.5,
                    color=VERMILLION)
        bottom.set_yticks([y[n] for n in lanes], lanes)
        bottom.set_ylim(0.3, len(lanes) + 0.8)
        bottom.set_xlabel("seconds after the close")
        bottom.set_xlim(left=min(0.0, *(s.start for s in tl.states)) if tl.states else 0.0,
                        right=max(tl.end * 1.03, 0.05))
        handles: list[Artist] = [Patch(facecolor=STATE_STYLE.get(s, (GREY, ""))[0], edgecolor=BLACK,
                         hatch=STATE_STYLE.get(s, (GREY, ""))[1], label=s) for s in seen]
        handles += [Line2D([], [], ls="", marker="|", ms=9, mew=1.5, color=BLUE, label="FIN arrives"),
                    Line2D([], [], ls="", marker="x", ms=6, mew=1.5, color=VERMILLION, label="final ACK dropped"),
                    Line2D([], [], ls="", marker="o", ms=6, color=GREEN, mec=BLACK, label="works")]
        fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=7, frameon=False)
        return _svg(fig, salt)


# --- cases side by side -------------------------------------------------------------


def cases_svg(points: list[CasePoints], salt: str) -> str:
    with matplotlib.rc_context(RC):
        n = len(points)
        fig = Figure(figsize=(10.5, 1.4 + 0.42 * n), layout="constrained")
        axes = fig.subplots(1, len(CASE_FIGURES), sharey=True, sharex=True)
        ys = list(range(n, 0, -1))
        boxes = any(len(p.values[k]) >= 5 for p in points for k, _ in CASE_FIGURES)
        for ax, (key, heading) in zip(axes, CASE_FIGURES):
            ax.set_title(heading, fontsize=8.5)
            ax.set_xlabel("s after the close")
            ax.grid(axis="x", color="#DDDDDD", lw=0.6)
            for y, p in zip(ys, points):
                vals = p.values[key]
                if boxes and len(vals) >= 5:
                    ax.boxplot([vals], positions=[y], vert=False, widths=0.5, showfliers=False,
                               patch_artist=True, boxprops={"facecolor": "#EEEEEE", "edgecolor": GREY},
                               medianprops={"color": GREY}, whiskerprops={"color": GREY},
                               capprops={"color": GREY})
                if vals:
                    jitter = [((i % 5) - 2) * 0.06 for i in range(len(vals))]
                    ax.plot(vals, [y + j for j in jitter], ls="", marker="o", ms=4.5, mfc="none",
                            mec=BLACK, mew=0.8)
                    ax.plot([statistics.median(vals)], [y], ls="", marker="|", ms=16, mew=2.4, color=VERMILLION)
                notes = ([f"never ({p.never[key]})"] if p.never[key] else []) + \
                    ([f"< {max(p.shorter[key]):.3f} ({len(p.shorter[key])})"] if p.shorter[key] else [])
                if notes:
                    ax.text(0.02, y, ", ".join(notes), transform=ax.get_yaxis_transform(),
                            fontsize=7, style="italic", color=GREY, va="center")
            ax.set_xlim(left=0)
        axes[0].set_yticks(ys, [textwrap.fill(p.case, 42) for p in points])
        axes[0].set_ylim(0.4, n + 0.6)
        handles: list[Artist] = [Line2D([], [], ls="", marker="o", mfc="none", mec=BLACK, label="one trial"),
                   Line2D([], [], ls="", marker="|", ms=12, mew=2.4, color=VERMILLION, label="median")]
        if boxes:
            handles.append(Patch(facecolor="#EEEEEE", edgecolor=GREY, label="quartiles (5 or more trials)"))
        fig.legend(handles=handles, loc="outside lower right", ncol=3, frameon=False, fontsize=7.5)
        return _svg(fig, salt)
