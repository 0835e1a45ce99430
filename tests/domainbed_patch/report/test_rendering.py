"""The Markdown and LaTeX tables (``report.rendering``)."""
from tests.domainbed_patch.report.smoke_sweep import GOLDEN, needs_domainbed


@needs_domainbed
def test_markdown_matches_golden(full_report):
    output, _, _ = full_report
    written = (output / "report.md").read_text(encoding="utf-8")
    assert written == GOLDEN.read_text(encoding="utf-8"), (
        "report.md differs from tests/fixtures/smoke_sweep_report.md; if the change "
        "is meant, regenerate it as tests/domainbed_patch/report/smoke_sweep.py says")


@needs_domainbed
def test_latex_has_one_booktabs_table_per_selection_method(full_report):
    tex = (full_report[0] / "report.tex").read_text(encoding="utf-8")
    assert tex.count(r"\begin{tabular}") == 3 and tex.count(r"\bottomrule") == 3
    assert r"56.4 $\pm$ 5.4" in tex and "±" not in tex and "—" not in tex
