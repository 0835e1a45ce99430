"""Reference CSVs and the comparison with them (``report.references``)."""
import re

import pandas as pd
import pytest

from domainbed_patch.report.records import SELECTION_LABELS, ReportError
from domainbed_patch.report.references import PACKAGED_SOURCE, load_references, reference_averages
from tests.domainbed_patch.report.smoke_sweep import SWEEP, needs_domainbed, run_main


@needs_domainbed
def test_user_reference_rows_appear_with_differences(tmp_path):
    csv = tmp_path / "paper.csv"
    csv.write_text(
        "selection,dataset,algorithm,environment,accuracy,stderr\n"
        "training-domain validation,Averages,HGP,Debug28,50.0,1.0\n"
        # DomainBed's own name of the method; a dataset "Avg" row without stderr
        "test-domain validation set (oracle),Debug28,Hutchinson,Avg,60.0,\n")
    status, _, stderr = run_main("--input_dir", SWEEP, "--output_dir", tmp_path / "out",
                                 "--reference", csv, "--no_figures")
    assert status == 0, stderr
    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert re.search(r"Reference sources: DomainBed 2020 \(.*\), paper\.csv\.", markdown)
    assert "| Debug28 | HGP | 56.4 ± 5.4 | 2 | 50.0 ± 1.0 | +6.4 | paper.csv |" in markdown
    assert "| Debug28 | Hutchinson | 59.0 ± 1.8 | 2 | 60.0 | -1.0 | paper.csv |" in markdown
    tex = (tmp_path / "out" / "report.tex").read_text(encoding="utf-8")
    assert (r"Debug28 & Hutchinson & 59.0 $\pm$ 1.8 & 2 & 60.0 & $-$1.0 & paper.csv \\"
            in tex.splitlines())
    table = pd.read_csv(tmp_path / "out" / "report.csv")
    hgp = table[(table["reference_source"] == "paper.csv")
                & (table["algorithm"] == "HGP")].iloc[0]
    assert hgp["difference"] == pytest.approx(hgp["accuracy"] - 50.0)


@needs_domainbed
def test_packaged_reference_holds_the_published_averages():
    averages = reference_averages(load_references())
    assert set(averages["source"]) == {PACKAGED_SOURCE}
    assert set(averages["selection"]) == set(SELECTION_LABELS.values())
    pacs_erm = averages[(averages["selection"] == "training-domain validation")
                        & (averages["dataset"] == "PACS")
                        & (averages["algorithm"] == "ERM")]
    assert pacs_erm[["accuracy", "stderr"]].values.tolist() == [[85.5, 0.2]]
    assert averages.groupby("selection").size().tolist() == [7 * 14] * 3


@needs_domainbed
@pytest.mark.parametrize("content, message", [
    ("selection,dataset,algorithm,accuracy\n", "lacks the column(s) environment, stderr"),
    ("selection,dataset,algorithm,environment,accuracy,stderr\n"
     "best-of-test,PACS,HGP,Avg,80,\n", "unknown selection 'best-of-test'"),
    ("selection,dataset,algorithm,environment,accuracy,stderr\n"
     "test-domain oracle,PACS,HGP,Avg,eighty,\n", "line 2: accuracy 'eighty'"),
], ids=["missing-columns", "unknown-selection", "not-a-number"])
def test_malformed_reference_csv_is_a_clear_error(tmp_path, content, message):
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    with pytest.raises(ReportError, match=re.escape(message)):
        load_references([csv])
    with pytest.raises(ReportError, match="does not exist"):
        load_references([tmp_path / "absent.csv"])
