"""A report as one self-contained HTML page (inline CSS and SVG, no script, no external
asset: it is opened inside the closed network) or as Markdown for a ticket.

Everything that comes from manifests or registries (image names, paths, error messages) is
untrusted: HTML goes through :func:`html.escape`, Markdown table cells have ``|``, backticks
and HTML-significant characters escaped and newlines removed.
"""

from __future__ import annotations

import html
import re

from kferry.report.model import Group, Report, Row

PRESENCE_TEXT = {
    "present": "in registry",
    "other-digest": "in registry, other digest",
    "missing": "not in registry",
    "unknown": "unknown",
}


def human(n: int | None) -> str:
    """Decimal units, as registries and ``kferry mirror`` report them."""
    if n is None:
        return "unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def group_size(g: Group) -> str:
    """A component's size; "unknown" when no image of it could be measured."""
    if g.unknown == len(g.rows):
        return "unknown"
    return human(g.size) + (f" + {g.unknown} unknown" if g.unknown else "")


def _images(n: int) -> str:
    return f"{n} image" if n == 1 else f"{n} images"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _how(row: Row) -> str:
    return ", ".join(sorted({u.how for u in row.uses}))


def _why(row: Row) -> str:
    if not row.optional:
        return "required"
    reasons = sorted({u.optional for u in row.uses if u.optional})
    return "optional: " + "; ".join(reasons)


def _short(digest: str | None) -> str:
    return digest if digest else "unknown"


# -- HTML ---------------------------------------------------------------------------------------
CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d2733}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 6px;border-bottom:2px solid #d5dce4}
.meta{color:#556;margin-bottom:14px}
.totals{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.tot{border:1px solid #d5dce4;border-radius:6px;padding:8px 14px;min-width:120px}
.tot b{display:block;font-size:20px}
.warn{background:#fff4d6;border:1px solid #e5c66a;border-radius:6px;padding:8px 12px;margin:8px 0}
table{border-collapse:collapse;width:100%;margin-top:6px;table-layout:fixed}
col.c-image{width:40%}col.c-size{width:12%}col.c-digest{width:20%}col.c-why{width:10%}
col.c-reg{width:18%}
th,td{text-align:left;vertical-align:top;padding:4px 8px;border-bottom:1px solid #e6eaef}
th{background:#f3f5f8;font-weight:600}
td.num{text-align:right;white-space:nowrap}
td.num small{white-space:normal;overflow-wrap:anywhere}
code{font:12px ui-monospace,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.uses{color:#445;font-size:12px;margin:2px 0 0;padding-left:16px}
.opt{color:#8a5a00}.req{color:#1b6e2e}.miss{color:#b3261e}.ok{color:#1b6e2e}.unk{color:#777}
svg text{font:12px system-ui,sans-serif;fill:#1d2733}
@media print{body{margin:8mm}}
"""


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _chart(groups: list[Group]) -> str:
    """Horizontal bars, one per component, scaled to the largest."""
    if not groups:
        return ""
    label_w, bar_w, row_h = 260, 420, 22
    top = max(g.size for g in groups) or 1
    height = row_h * len(groups) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{label_w + bar_w + 120}" '
        f'height="{height}" aria-label="size by component">'
    ]
    for i, g in enumerate(groups):
        y = 5 + i * row_h
        w = max(1, round(bar_w * g.size / top)) if g.size else 0
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">'
            f"<title>{_e(g.component)}</title>{_e(_cut(g.component, 36))}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 6}" fill="#3b6ea5"/>'
            f'<text x="{label_w + w + 6}" y="{y + 15}">{_e(group_size(g))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _presence_cell(row: Row) -> str:
    if row.presence is None:
        return ""
    cls = {"present": "ok", "missing": "miss", "other-digest": "opt"}.get(row.presence, "unk")
    note = f"<br><small>{_e(row.presence_note)}</small>" if row.presence_note else ""
    target = f"<br><code>{_e(row.target)}</code>" if row.target else ""
    return f'<td class="{cls}">{_e(PRESENCE_TEXT[row.presence])}{target}{note}</td>'


def _row_html(row: Row, with_registry: bool) -> str:
    if row.size is None:
        size = f'<span class="unk">unknown</span><br><small>{_e(row.unknown or "")}</small>'
    else:
        size = _e(human(row.size))
        if len(row.platforms) > 1 or (row.platforms and row.platforms[0].platform != "single"):
            size += "".join(
                f"<br><small>{_e(p.platform)}: {_e(human(p.size))}</small>" for p in row.platforms
            )
    uses = "".join(
        f"<li>{_e(u.how)}: <code>{_e(u.object)}</code> <code>{_e(u.path)}</code>"
        + (f' <span class="opt">(optional: {_e(u.optional)})</span>' if u.optional else "")
        + "</li>"
        for u in row.uses
    )
    also = f"<br><small>also used by {_e(', '.join(row.also))}</small>" if row.also else ""
    why_cls = "opt" if row.optional else "req"
    cells = [
        f'<td><code>{_e(row.image)}</code>{also}<ul class="uses">{uses}</ul></td>',
        f'<td class="num">{size}</td>',
        f"<td><code>{_e(_short(row.digest))}</code></td>",
        f'<td class="{why_cls}">{_e(_why(row))}<br><small>{_e(_how(row))}</small></td>',
    ]
    if with_registry:
        cells.append(_presence_cell(row))
    return "<tr>" + "".join(cells) + "</tr>"


def to_html(report: Report) -> str:
    groups = report.groups
    with_registry = report.registry is not None
    plats = ", ".join(report.platforms) if report.platforms else "all"
    totals = [
        ("images", str(len(report.rows))),
        ("components", str(len(groups))),
        ("total size", human(report.total) if report.unknown < len(report.rows) else "unknown"),
        ("size unknown", str(report.unknown)),
        ("optional", str(report.optional)),
    ]
    if with_registry:
        totals += [
            ("in registry", str(report.count("present"))),
            ("not in registry", str(report.count("missing"))),
        ]
        if report.count("other-digest"):
            totals.append(("in registry, other digest", str(report.count("other-digest"))))
        if report.count("unknown"):
            totals.append(("registry state unknown", str(report.count("unknown"))))
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>kferry transfer report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Images to transfer</h1>",
        f'<div class="meta">Source: {_e(", ".join(report.sources))} &middot; platforms: '
        f"{_e(plats)}"
        + (
            f" &middot; registry: <code>{_e(report.registry)}</code> (layout {_e(report.layout)})"
            if with_registry
            else ""
        )
        + (f" &middot; generated {_e(report.generated)}" if report.generated else "")
        + "</div>",
        '<div class="totals">'
        + "".join(f'<div class="tot"><b>{_e(v)}</b>{_e(k)}</div>' for k, v in totals)
        + "</div>",
    ]
    for w in report.warnings:
        head.append(f'<div class="warn">{_e(w)}</div>')
    head.append("<h2>Size by component</h2>")
    head.append(_chart(groups))
    body = []
    cols = ["image and where it is named", "size", "digest", "why"]
    classes = ["c-image", "c-size", "c-digest", "c-why"]
    if with_registry:
        cols.append("private registry")
        classes.append("c-reg")
    colgroup = "<colgroup>" + "".join(f'<col class="{c}">' for c in classes) + "</colgroup>"
    for g in groups:
        body.append(
            f"<h2>{_e(g.component)} <small>({_images(len(g.rows))}, {_e(group_size(g))})"
            "</small></h2>"
        )
        body.append(
            f"<table>{colgroup}<thead><tr>"
            + "".join(f"<th>{_e(c)}</th>" for c in cols)
            + "</tr></thead><tbody>"
        )
        body += [_row_html(r, with_registry) for r in g.rows]
        body.append("</tbody></table>")
    body.append(
        '<p class="meta">Sizes are read from manifests and indexes (no layer was downloaded): '
        "config and layers of the chosen platforms, each distinct blob once per image.</p>"
    )
    body.append("</body></html>\n")
    return "\n".join(head + body)


# -- Markdown -----------------------------------------------------------------------------------
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def _m(text: object) -> str:
    """A Markdown table cell: one line, HTML as entities, Markdown specials escaped."""
    one = " ".join(str(text).split())
    one = one.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", one)


def to_markdown(report: Report) -> str:
    groups = report.groups
    with_registry = report.registry is not None
    plats = ", ".join(report.platforms) if report.platforms else "all"
    out = [
        "# Images to transfer",
        "",
        f"Source: {_m(', '.join(report.sources))}; platforms: {_m(plats)}"
        + (
            f"; registry: {_m(report.registry)} (layout {_m(report.layout)})"
            if with_registry
            else ""
        )
        + (f"; generated {_m(report.generated)}" if report.generated else ""),
        "",
        f"- **{len(report.rows)} images** in {len(groups)} components, "
        f"**{human(report.total)}** ({report.unknown} of unknown size, {report.optional} optional)",
    ]
    if with_registry:
        out.append(
            f"- {report.count('present')} already in the registry, "
            f"{report.count('missing')} not, {report.count('other-digest')} with another digest"
        )
    out += [f"- warning: {_m(w)}" for w in report.warnings]
    out += ["", "| component | images | size |", "|---|---:|---:|"]
    out += [f"| {_m(g.component)} | {len(g.rows)} | {_m(group_size(g))} |" for g in groups]
    cols = ["image", "size", "digest", "why", "found at"]
    if with_registry:
        cols.append("private registry")
    for g in groups:
        out += ["", f"## {_m(g.component)}", ""]
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "---|" * len(cols))
        for r in g.rows:
            size = human(r.size) if r.size is not None else f"unknown: {r.unknown}"
            where = "; ".join(f"{u.how} {u.object} {u.path}" for u in r.uses)
            cells = [r.image, size, _short(r.digest), _why(r), where]
            if with_registry and r.presence is not None:
                cells.append(
                    PRESENCE_TEXT[r.presence] + (f" ({r.presence_note})" if r.presence_note else "")
                )
            out.append("| " + " | ".join(_m(c) for c in cells) + " |")
    return "\n".join(out) + "\n"
