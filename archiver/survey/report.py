"""The survey's outputs: the hitlist as JSON and CSV, the HTML contact sheets, and a group's key list.

Only formats what `run.Survey` holds; the HTML report reads the thumbnails it shows through the
`read(key) -> bytes` it is handed (at most `SHEET_CORE` core members and `SHEET_OUTLIERS` outliers
per group, and it says how many of how many), so it is independent of where the source lives. The
page is static: one `index.html` with the thumbnails inline as data: URIs and its two pictures
(`plots`: net saving against recall, each group's cost terms) as inline SVG; no script, nothing
fetched.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from archiver.survey.describe import decode
from archiver.survey.plots import cost_bars, net_against_recall
from archiver.survey.run import GroupResult, Survey
from archiver.sweep.cost import break_even, usd, verdict_line

SHEET_CORE = 24
SHEET_OUTLIERS = 12
THUMB_PX = 96
CAPTION_TEMPLATE = "a product photo of {words}"

CSV_COLUMNS = (
    "rank",
    "id",
    "template",
    "dimensions",
    "images",
    "bytes",
    "core",
    "outliers",
    "similarity",
    "recall",
    "storage_monthly",
    "traffic_monthly",
    "saving_monthly",
    "model_storage_monthly",
    "render_compute_monthly",
    "requests_monthly",
    "net_monthly",
    "loses_money",
    "break_even_render_ms",
    "score",
    "named_outliers",
)


def summary(survey: Survey, top: int) -> dict[str, Any]:
    """Everything the survey found, for `--json`."""
    terms = survey.terms
    return {
        "source": survey.source,
        "listed": survey.listed,
        "images": survey.images,
        "not_images": survey.not_images,
        "ungrouped": survey.ungrouped,
        "skipped": dict(survey.skipped),
        "bad": dict(survey.bad),
        "bad_examples": [{"key": k, "reason": r} for k, r in survey.bad_examples],
        "dense_descriptor": survey.dense,
        "groups_found": len(survey.groups),
        "seconds": round(survey.seconds, 2),
        "images_per_second": round(survey.images / survey.seconds, 1) if survey.seconds else None,
        "prices": None
        if terms is None
        else {
            "vault_class": terms.vault_class,
            "egress_price_per_gb": terms.egress_price,
            "cdn_offload": terms.cdn_offload,
        },
        "access_log": None
        if survey.traffic is None
        else {
            "form": survey.traffic.form,
            "lines": survey.traffic.lines,
            "counted": survey.traffic.counted,
            "bad_lines": survey.traffic.bad_lines,
            "span_days": survey.traffic.span_days,
        },
        "hitlist": [
            {"rank": rank, **group.to_dict()} for rank, group in enumerate(survey.groups[:top], start=1)
        ],
    }


def write_csv(survey: Survey, top: int, path: Path) -> None:
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(CSV_COLUMNS)
        for rank, g in enumerate(survey.groups[:top], start=1):
            writer.writerow(
                [
                    rank,
                    g.id,
                    g.template,
                    f"{g.width}x{g.height}",
                    g.images,
                    g.bytes,
                    g.core,
                    g.outliers,
                    f"{g.similarity:.4f}",
                    f"{g.recall.score:.4f}",
                    f"{g.saving.storage_monthly:.8f}",
                    f"{g.saving.traffic_monthly:.8f}",
                    f"{g.saving.monthly:.8f}",
                    f"{g.saving.net.model_storage:.8f}",
                    f"{g.saving.net.render_compute:.8f}",
                    f"{g.saving.net.requests:.8f}",
                    f"{g.saving.net.net:.8f}",
                    int(g.loses_money),
                    ""
                    if g.saving.net.break_even_seconds is None
                    else f"{g.saving.net.break_even_seconds * 1000:.3f}",
                    f"{g.score:.8f}",
                    " ".join(o["key"] for o in g.named_outliers),
                ]
            )


def write_group(survey: Survey, ref: str, path: Path) -> tuple[GroupResult, int]:
    """Write a group's core keys, one per line, under a header of `#` lines naming the group and a
    caption template (`archiver train --keys FILE` reads both). Returns the group and the count."""
    group = survey.group(ref)
    lines = [
        f"# archiver survey group {group.id}: {group.template} ({group.width}x{group.height})",
        f"# source: {survey.source}",
        f"# core {group.core} of {group.images} images; outliers left out: {group.outliers}",
        f"# caption-template: {CAPTION_TEMPLATE}",
    ]
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as stream:
        stream.write("\n".join(lines) + "\n")
        for key, _ in survey.members(group, core=True):
            stream.write(key + "\n")
            count += 1
    return group, count


SIMILARITY_LINE = (
    "Similarity (0-1): how alike the group's core images are to each other, from their perceptual "
    "hashes and LPIPS-trunk features; 1 is identical."
)
RECALL_LINE = (
    "Recall (0-1): how likely one model is to regenerate every core image: the core's share of the "
    "group x (0.5 + 0.5 x similarity) x the variants (32 or more count fully)."
)


def write_html(survey: Survey, top: int, directory: Path, read: Callable[[str], bytes]) -> Path:
    """`directory/index.html`: the hitlist with every cost term, its two pictures, and each listed
    group's contact sheet."""
    directory.mkdir(parents=True, exist_ok=True)
    esc = html.escape
    listed = survey.groups[:top]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>archiver survey of {esc(survey.source)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td.t,th.t{text-align:left}"
        "tr.loses td.net{color:#b00;font-weight:bold}"
        "figure{display:inline-block;margin:3px;text-align:center;font-size:10px;width:"
        f"{THUMB_PX + 8}px;vertical-align:top;word-break:break-all}}"
        "figure img{border:3px solid #fff}figure.outlier img{border-color:#d22}"
        "figure.outlier figcaption{color:#d22;font-weight:bold}section{margin-top:2em}"
        "svg{font-family:sans-serif;font-size:11px;display:block;margin:1em 0}</style></head><body>",
        f"<h1>Survey of {esc(survey.source)}</h1>",
        f"<p>{survey.images} images described, {len(survey.groups)} groups, {survey.ungrouped} ungrouped, "
        f"{sum(survey.bad.values())} bad, {sum(survey.skipped.values())} skipped keys. "
        "Ranked by net saving a month × recall; groups that would lose money come last and say so.</p>",
        f"<p class='explain' id='explain-similarity'>{esc(SIMILARITY_LINE)}</p>",
        f"<p class='explain' id='explain-recall'>{esc(RECALL_LINE)}</p>",
        _assumptions(survey),
        "<table id='hitlist'><tr><th>rank</th><th class='t'>group</th><th class='t'>template</th>"
        "<th>images</th><th>bytes</th><th>similarity</th><th>outliers</th><th>recall</th>"
        "<th>storage saved</th><th>egress avoided</th><th>model storage</th><th>render compute</th>"
        "<th>requests</th><th>net / month (USD)</th><th>per 1M images</th><th>break-even render</th></tr>",
    ]
    for rank, g in enumerate(listed, start=1):
        net = g.saving.net
        terms = "".join(f"<td>{usd(amount)}</td>" for amount in net.terms().values())
        verdict = " loses money" if net.loses_money else ""
        parts.append(
            f"<tr class='{'loses' if net.loses_money else 'saves'}'><td>{rank}</td>"
            f"<td class='t'><a href='#g-{g.id}'>{g.id}</a></td>"
            f"<td class='t'>{esc(g.template)}</td><td>{g.images}</td><td>{g.bytes}</td>"
            f"<td>{g.similarity:.2f}</td><td>{g.outliers}</td><td>{g.recall.score:.2f}</td>{terms}"
            f"<td class='net'>{usd(net.net)}{verdict}</td><td>{usd(net.per_million_images)}</td>"
            f"<td>{esc(break_even(net.break_even_seconds, short=True))}</td></tr>"
        )
    parts.append("</table>")
    parts.append(net_against_recall(listed))
    parts.append(cost_bars(listed))
    for rank, g in enumerate(listed, start=1):
        shown = g.sample_keys[:SHEET_CORE]
        outliers = [o["key"] for o in g.named_outliers[:SHEET_OUTLIERS]]
        parts.append(
            f"<section class='group' id='g-{g.id}'><h2>#{rank} {esc(g.template)} "
            f"<small>({g.id}, {g.width}x{g.height})</small></h2>"
            f"<p>{g.core} near-identical of {g.images}; similarity {g.similarity:.2f}, recall "
            f"{g.recall.score:.2f}; net saving {usd(g.saving.net.net)}/month: "
            f"{esc(verdict_line(g.saving.net))}; "
            f"formats {esc(', '.join(f'{k} {v}' for k, v in g.formats.items()))}.</p>"
            f"<p class='shown'>{len(shown)} of {g.core} near-identical images shown"
            f"{f', and {len(outliers)} of {g.outliers} outliers' if g.outliers else ''}.</p>"
            "<div class='sheet'>"
        )
        for key, outlier in [(k, False) for k in shown] + [(k, True) for k in outliers]:
            parts.append(_figure(key, outlier, read))
        parts.append("</div></section>")
    parts.append("</body></html>")
    index = directory / "index.html"
    index.write_text("".join(parts), encoding="utf-8")
    return index


def _assumptions(survey: Survey) -> str:
    """One line on what the costs assume: the render, the model, the CDN."""
    terms = survey.terms
    if terms is None:
        return ""
    c = terms.compute
    hardware = f"{c.cores} CPU cores" if c.cores else "a GPU"
    traffic = "the access log" if survey.traffic is not None else "no access log (no traffic counted)"
    return (
        f"<p class='explain' id='explain-costs'>Costs: a render per CDN miss ({1 - terms.cdn_offload:.0%} "
        f"of requests in {traffic}), {c.seconds * 1000:.1f} ms on {hardware} at {usd(c.price_per_hour)} an "
        f"hour ({html.escape(c.source)}); each group its own model of {terms.model_bytes:,} bytes in the "
        f"vault's {terms.journal_class}; egress {usd(terms.egress_price)}/GB. Per 1M images: 1,000,000 "
        "images in groups like each.</p>"
    )


def _figure(key: str, outlier: bool, read: Callable[[str], bytes]) -> str:
    esc = html.escape
    label = ("outlier: " if outlier else "") + key.rpartition("/")[2]
    try:
        thumb = decode(read(key), key).thumb
        buf = io.BytesIO()
        thumb.resize((THUMB_PX, THUMB_PX), Image.Resampling.NEAREST).save(buf, "PNG")
        src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        img = f"<img src='{src}' width='{THUMB_PX}' height='{THUMB_PX}' alt='{esc(key)}'>"
    except Exception as error:  # gone or changed since the survey read it: say so in its place
        img = f"<div>unreadable: {esc(type(error).__name__)}</div>"
    css = "outlier" if outlier else "core"
    return f"<figure class='{css}' title='{esc(key)}'>{img}<figcaption>{esc(label)}</figcaption></figure>"


def dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True)
