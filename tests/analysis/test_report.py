"""The report page shows hostile text as text: ids and object names come from FITS headers
and file names, label names and paths from the user, and none of them may become markup."""

from __future__ import annotations

from html.parser import HTMLParser

import pyarrow.parquet as pq
import pytest

from specray.analysis.report import render_comparison
from specray.cli import main
from tests.analysis.test_analyze import planted_table

SCRIPT = '<script>alert("x")</script>'
IMAGE = "<img src=x onerror=alert(1)>"


class Page(HTMLParser):
    """The elements, attributes and text a browser would see."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.update(name for name, _ in attrs)

    def handle_data(self, data):
        self.text.append(data)


def hostile_latents(path) -> None:
    """The planted latent table with markup in every id and object name."""
    planted_table(path)
    table = pq.read_table(path)
    objects = [f"{SCRIPT}{name}" for name in table["object"].to_pylist()]
    ids = [f"{IMAGE}{name}" for name in table["id"].to_pylist()]
    table = table.set_column(0, "id", [ids]).set_column(1, "object", [objects])
    assert table.column_names[:2] == ["id", "object"]
    pq.write_table(table, path)


@pytest.mark.filterwarnings(  # few permutations: this test is about the page, not p-values
    "ignore::specray.analysis.significance.UnresolvedPermutationWarning"
)
def test_markup_in_ids_objects_and_paths_reaches_the_page_as_text(tmp_path):
    latents = tmp_path / "<b>latents.parquet"
    hostile_latents(latents)
    out = tmp_path / "out"
    argv = ["-q", "analyze", "--latents", str(latents), "--out", str(out)]
    argv += ["--labels", "rv,teff", "--permutations", "50", "--seed", "1"]
    argv += ["--set", "analysis.ci_resamples=10", "--set", "analysis.attribution_permutations=19"]
    assert main(argv) == 0
    page = Page((out / "report.html").read_text())
    assert "script" not in page.tags and "onerror" not in page.attributes
    text = "".join(page.text)
    assert SCRIPT in text and IMAGE in text  # the anomaly table names the hostile spectra
    assert f"{tmp_path}/<b>latents.parquet" in text  # the source path, shown as typed


def test_the_retrain_comparison_escapes_labels_paths_and_ids():
    comparison = {
        "labels": {SCRIPT: {"node_before": 3, "node_now": 5, "mi_before": 1.2, "mi_now": 0.9}},
        "new_anomalies": [IMAGE, "HD 10700"],
    }
    page = Page(render_comparison(comparison, "s3://bucket/<i>run</i>"))
    assert page.tags.count("tr") == 2 and "script" not in page.tags and "i" not in page.tags
    text = "".join(page.text)
    assert SCRIPT in text and f"{IMAGE}, HD 10700" in text and "s3://bucket/<i>run</i>" in text
