"""The survey report's two pictures, as inline SVG (no plotting library, nothing fetched):

- `net_against_recall`: one point per group, recall across, net saving a month up; green saves,
  red loses money. Amounts span many orders of magnitude ($0.000001 of storage, dollars of
  egress), so the vertical axis is symmetric-logarithmic: linear within `LINEAR_USD` of zero,
  logarithmic beyond, with the sign kept.
- `cost_bars`: one diverging bar per group: what it saves (storage, egress) to the right of zero,
  what it costs (model storage, render compute, requests) to the left, each bar scaled to its own
  largest side so the proportions read at every size; the amounts are in each segment's tooltip.
  A term too small to see at its bar's scale still gets a sliver (`SLIVER_PX`): it is there.

Formats `GroupResult`s only; knows nothing of where they came from.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from archiver.survey.run import GroupResult
from archiver.sweep.cost import usd

SLIVER_PX = 2.0  # the narrowest segment drawn for a term that is not zero
LINEAR_USD = 1e-6  # below this, amounts are drawn on a linear scale around zero
SAVES, LOSES = "#1a7f37", "#c62828"
TERM_COLOURS = {
    "storage saved": "#2e7d32",
    "egress avoided": "#66bb6a",
    "model storage": "#8e24aa",
    "render compute": "#ef6c00",
    "requests": "#757575",
}


def _symlog(amount: float) -> float:
    return math.copysign(math.log10(1 + abs(amount) / LINEAR_USD), amount)


def _decade(amount: float) -> str:
    """A power of ten in dollars as people write it: $0.0001, $1, $1,000 (sign kept)."""
    if amount == 0:
        return "$0"
    sign = "-" if amount < 0 else ""
    exponent = round(math.log10(abs(amount)))
    digits = f"{10**exponent:,.0f}" if exponent >= 0 else f"0.{'0' * (-exponent - 1)}1"
    return f"{sign}${digits}"


def net_against_recall(groups: Sequence[GroupResult], width: int = 560, height: int = 320) -> str:
    """The scatter plot: `<svg id='net-vs-recall'>` with one `circle.group` per group."""
    left, right, top, bottom = 90, 20, 24, 40
    nets = [g.saving.net.net for g in groups] or [0.0]
    span = max(abs(_symlog(v)) for v in nets) or 1.0
    span = math.ceil(span)

    def x(recall: float) -> float:
        return left + recall * (width - left - right)

    def y(amount: float) -> float:
        return top + (span - _symlog(amount)) / (2 * span) * (height - top - bottom)

    out = [
        f"<svg id='net-vs-recall' role='img' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg'>",
        "<title>Net saving a month against recall, one point per group</title>",
        f"<text x='{left}' y='14'>net saving / month (USD, symmetric log scale) against recall</text>",
        f"<line x1='{left}' y1='{y(0):.1f}' x2='{width - right}' y2='{y(0):.1f}' stroke='#999'/>",
        f"<line x1='{left}' y1='{top}' x2='{left}' y2='{height - bottom}' stroke='#999'/>",
    ]
    for decade in range(0, span + 1, max(1, span // 4)):  # 0, then decades above LINEAR_USD
        for sign in (1, -1) if decade else (1,):
            amount = sign * LINEAR_USD * 10**decade if decade else 0.0
            out.append(
                f"<text x='{left - 4}' y='{y(amount) + 4:.1f}' text-anchor='end'>{_decade(amount)}</text>"
            )
    for recall in (0.0, 0.25, 0.5, 0.75, 1.0):
        out.append(
            f"<text x='{x(recall):.1f}' y='{height - bottom + 16}' text-anchor='middle'>{recall:.2f}</text>"
        )
    out.append(f"<text x='{x(0.5):.1f}' y='{height - 6}' text-anchor='middle'>recall</text>")
    for rank, g in enumerate(groups, start=1):
        net = g.saving.net
        colour = LOSES if net.loses_money else SAVES
        label = f"#{rank} {g.template}: net {usd(net.net)}/month, recall {g.recall.score:.2f}"
        cx, cy = x(g.recall.score), y(net.net)
        out.append(
            f"<circle class='group {'loses' if net.loses_money else 'saves'}' data-group='{g.id}' "
            f"cx='{cx:.1f}' cy='{cy:.1f}' r='6' fill='{colour}'><title>{html.escape(label)}</title></circle>"
            f"<text x='{cx + 8:.1f}' y='{cy + 4:.1f}'>#{rank}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def cost_bars(groups: Sequence[GroupResult], width: int = 560, row: int = 26) -> str:
    """The cost terms: `<svg id='cost-terms'>` with one `g.bar` per group, a `rect.term` per term."""
    label_width, legend = 150, 22
    height = legend + row * len(groups) + 8
    middle = label_width + (width - label_width) / 2
    half = (width - label_width) / 2 - 8
    out = [
        f"<svg id='cost-terms' role='img' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg'>",
        "<title>Each group's monthly cost terms: savings right of zero, costs left</title>",
    ]
    lx = 0.0
    for name, colour in TERM_COLOURS.items():
        out.append(
            f"<rect x='{lx:.0f}' y='4' width='10' height='10' fill='{colour}'/>"
            f"<text x='{lx + 13:.0f}' y='13'>{name}</text>"
        )
        lx += 14 + 7 * len(name)
    out.append(f"<line x1='{middle}' y1='{legend}' x2='{middle}' y2='{height}' stroke='#999'/>")
    for index, g in enumerate(groups):
        terms = g.saving.net.terms()
        saved = sum(v for v in terms.values() if v > 0)
        cost = -sum(v for v in terms.values() if v < 0)
        scale = half / max(saved, cost) if max(saved, cost) > 0 else 0.0
        top = legend + index * row
        out.append(
            f"<g class='bar' data-group='{g.id}'><text x='0' y='{top + 15}'>"
            f"#{index + 1} {html.escape(g.id)} {html.escape(usd(g.saving.net.net))}</text>"
        )
        right, left = middle, middle
        for name, amount in terms.items():
            if amount == 0:
                continue
            size = max(abs(amount) * scale, SLIVER_PX)
            if amount > 0:
                start, right = right, right + size
            else:
                left -= size
                start = left
            tip = f"{g.template}: {name} {usd(amount)}/month"
            out.append(
                f"<rect class='term' data-term='{name}' x='{start:.1f}' y='{top + 4}' width='{size:.1f}' "
                f"height='{row - 8}' fill='{TERM_COLOURS[name]}'><title>{html.escape(tip)}</title></rect>"
            )
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)
