"""Recorded values as literal text in the report's markdown (and so in report.html, which
python-markdown makes of it) and in the Model Registry's markdown descriptions.

Anything a user typed or a run recorded (choice labels, swept and fixed values, run,
experiment and metric names) may hold markup: markdown passes raw HTML through, so
`<script>` would run in report.html, `[x](javascript:...)` would be a link, and a `|`
would split a table cell into junk columns.
"""

import re

# Markdown's marks that change what text means (emphasis and code across cells, links,
# table cells); `_` only at a word's edge, since python-markdown ignores it mid-word.
MARKS = re.compile(r"([\\`*\[\]|])|(?<!\w)_|_(?!\w)")


def literal(value) -> str:
    """The value as text that markdown and HTML show as it is: < as an entity (no tag
    can open; > and & alone open none, and stay readable in report.md), markdown's marks
    backslash-escaped, line breaks as spaces (a table row is one line)."""
    escaped = " ".join(str(value).splitlines()).replace("<", "&lt;")
    return MARKS.sub(lambda mark: "\\" + mark[0], escaped)
