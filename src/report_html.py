"""report.html: report.md's sections as one self-contained page, each figure inline
as SVG where report.md shows its PNG.

The MLflow UI (3.17) shows an .html artifact in an iframe made from a blob URL with
`sandbox="allow-scripts"`: the page has an origin of its own, may not open windows or
navigate the UI, and is not given the artifact's URL. So everything is in the file (CSS,
SVG; no script, font or image to fetch) and run ids are text, not links.
"""

import html
import io
import re

import matplotlib

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
div.wide { overflow-x: auto; }  /* the UI's artifact pane is narrow: wide tables scroll */
table { border-collapse: collapse; margin: 0.8em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f3f3f3; } td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { font-size: 0.9em; background: #f5f5f5; padding: 0 0.2em; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
li.warning, p.warning { color: #a00; }
"""


def svg(figure) -> str:
    """The figure as an inline <svg> element, its text kept as text (searchable, small)."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    # Inline, the XML prolog and doctype go; the metadata block names its schema by URL.
    return re.sub(r"<metadata>.*?</metadata>", "", text[text.index("<svg"):], flags=re.S)


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _table(lines: list[str]) -> str:
    """A markdown table (header, alignment row, rows) as <table>; right-aligned columns as numbers."""
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    right = [c.endswith(":") for c in cells[1]]
    head = "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td{' class=number' if r else ''}>{_inline(c)}</td>"
                                    for c, r in zip(row, right, strict=False)) + "</tr>" for row in cells[2:])
    return f"<div class=wide><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def page(markdown: str, figures: dict) -> str:
    """The page of a report: its markdown (headings, paragraphs, lists, tables; what
    compare.markdown writes) in HTML, each `![alt](name.png)` drawn from figures[name].
    A section added to the markdown appears here as it is."""
    lines, out, title = markdown.splitlines(), [], "Comparison"
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):  # a table: this line and the next ones that start with "|"
            end = i
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            out.append(_table(lines[i:end]))
            i = end
            continue
        if line.startswith("# "):
            title = line[2:]
            out.append(f"<h1>{_inline(title)}</h1>")
        elif line.startswith("## "):
            out.append(f"</section><section><h2>{_inline(line[3:])}</h2>")
        elif image := re.fullmatch(r"!\[(.*)\]\((.+)\)", line):
            if image[2] in figures:
                out.append(f"<figure>{svg(figures[image[2]])}<figcaption>{_inline(image[1])}</figcaption></figure>")
        elif line.startswith("- "):
            warning = " class=warning" if "WARNING" in line else ""
            out.append(f"<ul><li{warning}>{_inline(line[2:])}</li></ul>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    body = "\n".join(out).replace("</ul>\n<ul>", "\n")  # consecutive items: one list
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body><section>\n{body}\n</section></body></html>\n")
