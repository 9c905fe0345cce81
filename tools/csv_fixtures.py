"""Writes the CSV files the reader is tested on (crates/gradtape/tests/fixtures/csv/), as three
writers make them: Python's csv module, pandas, and a spreadsheet's "CSV UTF-8" export (a
byte-order mark and CRLF line ends, quoted cells with commas and doubled quotes).

    python3 -m venv venv && venv/bin/pip install pandas && venv/bin/python tools/csv_fixtures.py

Every file holds the same table; crates/gradtape/tests/csv_files.rs reads each and compares it
with the values written here (also in expected.json).
"""
import csv
import json
import os

import pandas as pd

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "gradtape", "tests", "fixtures", "csv")
COLUMNS = ["petal_length", "species, common name", "note", "petal_width"]
ROWS = [
    [1.4, "setosa, bristle-pointed", 'a "quoted" word', 0.2],
    [4.7, "versicolor", "", 1.4],
    [6.0, "virginica", "line one\nline two", 2.5],
    [1.3, "setosa, bristle-pointed", "plain", 0.2],
]


def main():
    os.makedirs(OUT, exist_ok=True)
    # Python's csv module: minimal quoting, \r\n line ends (its default)
    with open(os.path.join(OUT, "python_csv.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows(ROWS)
    # pandas: to_csv without the index, \n line ends
    pd.DataFrame(ROWS, columns=COLUMNS).to_csv(os.path.join(OUT, "pandas.csv"), index=False)
    # a spreadsheet's "CSV UTF-8": BOM, every text cell quoted, CRLF
    with open(os.path.join(OUT, "spreadsheet_bom_crlf.csv"), "w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
        w.writerow(COLUMNS)
        w.writerows(ROWS)
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"columns": COLUMNS, "rows": [[str(c) for c in r] for r in ROWS]}, f, indent=1)


if __name__ == "__main__":
    main()
