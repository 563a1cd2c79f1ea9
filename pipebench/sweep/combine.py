"""The combined tables of a sweep: every cell's rows, with one column per swept key in front.

Rows are joined as text, so each number is byte for byte what the cell's
own results folder holds, and the combined file depends only on the cells
(not on the executor or the order in which they finished).
"""

from __future__ import annotations

import csv
import io

from pipebench.export import value_text


def combined_csv(keys: list[str], cells: list[tuple[tuple, str]], columns: list[str]) -> str:
    """One CSV of the cells' CSVs (`(values, text)` in grid order), each row led by its values.

    With no cells (a sweep stopped before the first finished), just the
    header: the keys and `columns`.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if not cells:
        writer.writerow([*keys, *columns])
    header = None
    for values, text in cells:
        rows = csv.reader(io.StringIO(text, newline=""))
        first = next(rows)
        if header is None:
            header = first
            writer.writerow([*keys, *header])
        elif first != header:
            raise ValueError(f"cell tables differ in their columns: {first} against {header}")
        lead = [value_text(value) for _, value in values]
        writer.writerows([*lead, *row] for row in rows)
    return out.getvalue()
