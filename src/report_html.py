"""report.html: report.md's sections as one self-contained page, each figure inline
as SVG where report.md shows its PNG.

The MLflow UI (3.17) shows an .html artifact in an iframe made from a blob URL with
`sandbox="allow-scripts"`: the page has an origin of its own, may not open windows or
navigate the UI, and is not given the artifact's URL. So everything is in the file (CSS,
SVG; no script, font or image to fetch) and run ids are text, not links. Recorded values
come in as text (src/markup.py), and the page's Content-Security-Policy forbids every
script and every fetch besides, should a value ever slip through.
"""

import html
import io
import re

import markdown
import matplotlib

# Nothing may run or load: inline CSS only (the SVGs are inline elements, not loads).
POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
div.wide { overflow-x: auto; }  /* the UI's artifact pane is narrow: wide tables scroll */
table { border-collapse: collapse; margin: 0.8em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f3f3f3; } td[style*=right] { font-variant-numeric: tabular-nums; white-space: nowrap; }
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


def page(text: str, figures: dict) -> str:
    """The page of a report: its markdown (what report_text.markdown writes) in HTML, each
    `![alt](name.png)` drawn inline from figures[name]. A section added to the markdown
    appears here as it is."""
    body = markdown.markdown(text, extensions=["tables"], output_format="html")

    def inline(image: re.Match) -> str:
        name = html.unescape(image["src"])
        return f"<figure>{svg(figures[name])}<figcaption>{image['alt']}</figcaption></figure>" if name in figures else ""

    body = re.sub(r'<img alt="(?P<alt>[^"]*)" src="(?P<src>[^"]+)"\s*/?>', inline, body)
    body = re.sub(r"<p>\s*((?:<figure>.*?</figure>\s*)+)</p>", r"\1", body, flags=re.S)  # a figure is no paragraph
    body = re.sub(r"<table>(.*?)</table>", r"<div class=wide><table>\1</table></div>", body, flags=re.S)
    body = body.replace("<li>WARNING", "<li class=warning>WARNING")
    title = re.search(r"<h1>(.*?)</h1>", body)
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
            f"<title>{title[1] if title else 'Comparison'}"
            f"</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")
