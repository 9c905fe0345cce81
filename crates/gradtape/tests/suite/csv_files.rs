//! CSV files as three writers make them (tools/csv_fixtures.py: Python's csv module, pandas,
//! a spreadsheet's "CSV UTF-8" export with a BOM and CRLF) read into the same table: quoted
//! commas, doubled quotes, a line break inside quotes. The hand-written reader this replaced
//! refused the first ("the row has 6 cells") and kept the BOM in the first column's name.

use std::path::PathBuf;

use gradtape::data::read_csv;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/csv")
}

#[test]
fn the_three_writers_files_read_as_the_table_they_wrote() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    let columns: Vec<String> = serde_json::from_value(expected["columns"].clone()).unwrap();
    let rows: Vec<Vec<String>> = serde_json::from_value(expected["rows"].clone()).unwrap();
    for file in ["python_csv.csv", "pandas.csv", "spreadsheet_bom_crlf.csv"] {
        let t = read_csv(&fixtures().join(file)).unwrap();
        assert_eq!(t.columns, columns, "{file}");
        assert_eq!(t.rows.len(), rows.len(), "{file}");
        for (got, want) in t.rows.iter().zip(&rows) {
            // numbers as each writer formats them (pandas writes 6.0 where Python's str gives 6.0)
            assert_eq!(got[1..3], want[1..3], "{file}");
            for i in [0, 3] {
                assert_eq!(
                    got[i].parse::<f64>().unwrap(),
                    want[i].parse::<f64>().unwrap()
                );
            }
        }
        // the row after the quoted line break is on line 6 of the file
        assert_eq!(t.lines, vec![2, 3, 4, 6], "{file}");
        // a column is found by the name a user sees (no BOM in front of it)
        assert_eq!(t.column("petal_length").unwrap(), 0, "{file}");
    }
}

#[test]
fn ragged_rows_and_empty_files_keep_their_clear_errors() {
    let dir = std::env::temp_dir().join(format!("gradtape-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ragged = dir.join("ragged.csv");
    std::fs::write(&ragged, "a,b\n1,2\n\n3,4,5\n").unwrap();
    let e = read_csv(&ragged).unwrap_err().to_string();
    assert!(
        e.contains("ragged.csv:4: the row has 3 cells, the first row has 2"),
        "{e}"
    );
    let empty = dir.join("empty.csv");
    std::fs::write(&empty, "\n  \n").unwrap();
    let e = read_csv(&empty).unwrap_err().to_string();
    assert!(e.contains("the file is empty"), "{e}");
    let latin1 = dir.join("latin1.csv");
    std::fs::write(&latin1, b"a,b\n1,caf\xe9\n").unwrap();
    let e = read_csv(&latin1).unwrap_err().to_string();
    assert!(e.contains("latin1.csv:2: not UTF-8 text"), "{e}");
    // a header and no rows: read, but no data set can be made of it
    let header_only = dir.join("header.csv");
    std::fs::write(&header_only, "x,y\n").unwrap();
    let t = read_csv(&header_only).unwrap();
    let e = t
        .dataset("y", gradtape::data::Task::Regression, gradtape::DType::F32)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no data rows"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
