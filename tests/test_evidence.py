"""The README's LM evidence is the committed report's, and the committed report is what its command builds from the
committed runs: numbers in the README cannot drift from the runs behind them."""

import os
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY = os.path.join(ROOT, "benchmarks", "results", "lm_study")

#: The first line of each table the README copies, and the file it comes from: the overview over problems, the
#: one-run table and WSD's gain against the budget (`lm_report`), what the adaptive runs decided (`adaptive_rule`).
COPIED_TABLES = {"| schedule | python_tiny |": "results.md",
                 "| problem | tokens per parameter | best of linear and WSD |": "results.md",
                 "| problem | tokens per parameter | best WSD |": "results.md",
                 "| problem | schedule | best LR | at the best LR (per seed) |": "adaptive_rule.md"}


def _table(text: str, header: str) -> list[str]:
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert len(starts) == 1, f"{header!r} appears {len(starts)} times"
    table = []
    for line in lines[starts[0]:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return table


@pytest.mark.parametrize("header", COPIED_TABLES)
def test_the_readme_tables_are_the_committed_reports(header):
    readme = open(os.path.join(ROOT, "README.md")).read()
    report = open(os.path.join(STUDY, COPIED_TABLES[header])).read()
    assert _table(readme, header) == _table(report, header)


def test_the_committed_report_is_what_lm_report_builds_from_the_committed_runs(tmp_path):
    from benchmarks.lm_report import write_report

    for name in os.listdir(STUDY):
        if name.startswith("summary_"):
            shutil.copy(os.path.join(STUDY, name), tmp_path / name)
    shutil.copytree(os.path.join(STUDY, "runs"), tmp_path / "runs")
    assert write_report(str(tmp_path)) == open(os.path.join(STUDY, "results.md")).read()
    assert (tmp_path / "runs.csv").read_text() == open(os.path.join(STUDY, "runs.csv")).read()
