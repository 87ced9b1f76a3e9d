from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sibyl.errors import InvalidArgument
from sibyl.features.sources import BadInput, guess_format, read_rows


def test_csv_rows_vectors_and_empty_cells(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("consumer_id,orders,emb\n1,3,0.1;0.2\n2,,1;2\n\n3,4.5,\n")
    rows = list(read_rows(str(path)))
    assert rows == [
        ("line 2", ("consumer_id", "1", {"orders": 3.0, "emb": [0.1, 0.2]})),
        ("line 3", ("consumer_id", "2", {"emb": [1.0, 2.0]})),
        ("line 5", ("consumer_id", "3", {"orders": 4.5})),
    ]


def test_csv_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text('id,note_len\n"a\nb",1\nc,2\nd,zz\n')  # a quoted id spanning two lines
    with pytest.raises(BadInput, match=r"^line 5: column 'note_len': 'zz' is not a number"):
        list(read_rows(str(path), entity="consumer_id"))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "line 1: the file is empty"),
        ("id\n1\n", "line 1: need an entity id column"),
        ("id,a\n1,2,3\n", "line 2: 3 fields"),
        ("id,a\n,2\n", "line 2: empty entity id"),
        ("id,a\n1,1;x\n", "line 2: column 'a'"),
    ],
)
def test_csv_errors_name_the_line(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "f.csv"
    path.write_text(text)
    with pytest.raises(BadInput, match=error):
        list(read_rows(str(path)))


def test_entity_column_and_type_can_be_chosen(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("a,store,b\n1,s9,2\n")
    assert list(read_rows(str(path), entity="store_id", entity_column="store")) == [
        ("line 2", ("store_id", "s9", {"a": 1.0, "b": 2.0}))
    ]


def test_parquet_rows_lists_and_nulls(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    table = pa.table(
        {
            "store_id": ["1", "2"],
            "rating": [4.5, None],
            "emb": [[0.5, 1.0], [2.0, 3.0]],
            "n": pa.array([1, 2], pa.int32()),
        }
    )
    pq.write_table(table, path)
    assert list(read_rows(str(path))) == [
        ("row 1", ("store_id", "1", {"rating": 4.5, "emb": [0.5, 1.0], "n": 1.0})),
        ("row 2", ("store_id", "2", {"emb": [2.0, 3.0], "n": 2.0})),
    ]


def test_parquet_bad_value_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"id": ["1", "2", "3"], "a": ["1", "2", "x"]}), path)
    with pytest.raises(BadInput, match="row 3: column 'a'"):
        list(read_rows(str(path)))


def test_format_from_suffix() -> None:
    assert guess_format("a.CSV") == "csv" and guess_format("a.pq") == "parquet" and guess_format("a.ndjson") == "jsonl"
    with pytest.raises(InvalidArgument, match="--format"):
        guess_format("a.xlsx")
