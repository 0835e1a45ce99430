"""Layout checks of image-folder datasets: own layouts, the paper's five, the doctor."""
import pytest

from domainbed_patch import dataset_layout as layout
from tests.domainbed_patch.image_folders import fake_paper_dataset, write_image_folder

DOMAINS = ["alpha", "beta", "gamma"]
CLASSES = ["cat", "dog"]


@pytest.fixture(autouse=True)
def empty_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("HESSIAN_DG_DATASETS", str(tmp_path / "registry.json"))


def test_a_good_layout_is_scanned_with_hidden_folders_and_other_files_skipped(tmp_path):
    root = write_image_folder(tmp_path / "data", DOMAINS, CLASSES, per_class=2)
    write_image_folder(root / ".trash", ["x"], ["y"], per_class=1)  # a hidden domain
    (root / "alpha" / ".ipynb_checkpoints").mkdir()  # a hidden, empty class
    (root / "alpha" / "cat" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("a file beside the domains")
    nested = root / "beta" / "dog" / "more"
    nested.mkdir()
    (nested / "x.PNG").write_bytes((root / "beta" / "dog" / "0.png").read_bytes())
    scanned = layout.scan(root)
    assert list(scanned) == DOMAINS
    assert {d: list(c) for d, c in scanned.items()} == {d: CLASSES for d in DOMAINS}
    assert scanned["alpha"]["cat"] == ("0.png", "1.png")
    assert scanned["beta"]["dog"] == ("0.png", "1.png", "more/x.PNG")
    assert layout.layout_problems(root) == []
    assert ".trash" in layout.scan(root, skip_hidden=False)


def test_a_class_missing_in_one_domain_is_one_line_naming_both(tmp_path):
    root = write_image_folder(tmp_path, DOMAINS, {"alpha": CLASSES, "beta": ["dog"],
                                                  "gamma": CLASSES})
    problems = layout.layout_problems(root)
    assert len(problems) == 1
    assert problems[0].startswith(f"{root / 'beta'}/ lacks class folder(s) cat ")
    assert "\n" not in problems[0]


@pytest.mark.integration  # DomainBed's own code runs
def test_domainbed_labels_classes_by_position_so_a_missing_class_shifts_labels(tmp_path):
    """What the message above claims, seen in DomainBed's own image-folder class."""
    pytest.importorskip("torchvision")
    from domainbed_patch.locate import import_domainbed
    datasets = import_domainbed("datasets")
    root = write_image_folder(tmp_path, ["a", "b"], {"a": ["cat", "dog"], "b": ["dog"]})
    read = datasets.MultipleEnvironmentImageFolder(str(root), [], False, {})
    assert read.datasets[0].class_to_idx == {"cat": 0, "dog": 1}
    assert read.datasets[1].class_to_idx == {"dog": 0}


def test_an_empty_class_and_an_unreadable_image_are_one_line_each(tmp_path):
    root = write_image_folder(tmp_path, DOMAINS, CLASSES, per_class=2)
    for image in (root / "gamma" / "dog").iterdir():
        image.unlink()
    (root / "alpha" / "cat" / "broken.jpg").write_bytes(b"not a jpeg at all")
    problems = layout.layout_problems(root)
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{root / 'gamma' / 'dog'}/ holds no image")
    assert problems[1].startswith(f"{root / 'alpha' / 'cat' / 'broken.jpg'} is not a "
                                  "readable image (UnidentifiedImageError")


def test_one_domain_or_none_is_refused(tmp_path):
    write_image_folder(tmp_path / "one", ["alpha"], CLASSES)
    (tmp_path / "none").mkdir()
    (one,) = layout.layout_problems(tmp_path / "one")
    assert "holds 1 domain folder(s) (alpha)" in one and "at least 2" in one
    (none,) = layout.layout_problems(tmp_path / "none")
    assert "holds 0 domain folder(s) (none)" in none
    absent = tmp_path / "absent"
    assert layout.layout_problems(absent) == [f"{absent}/ is not a folder"]


def test_the_table_holds_the_five_paper_datasets_with_domainbeds_folders():
    assert sorted(layout.PAPER_LAYOUTS) == sorted(
        ["PACS", "VLCS", "OfficeHome", "TerraIncognita", "DomainNet"])
    for expected in layout.PAPER_LAYOUTS.values():
        assert list(expected.domains) == sorted(expected.domains)  # DomainBed sorts them


@pytest.mark.integration
@pytest.mark.parametrize("dataset", sorted(layout.PAPER_LAYOUTS))
def test_domainbeds_dataset_class_reads_the_layout_of_the_table(dataset, tmp_path):
    """A tree built from the table passes the check, and DomainBed's own class reads
    it as that many environments and classes."""
    from domainbed_patch.locate import import_domainbed
    datasets = import_domainbed("datasets")
    fake_paper_dataset(tmp_path, dataset)
    assert layout.paper_problems(dataset, tmp_path) == (True, [])
    read = datasets.get_dataset_class(dataset)(str(tmp_path), [0],
                                               {"data_augmentation": False})
    expected = layout.PAPER_LAYOUTS[dataset]
    assert len(read) == len(expected.domains) == len(read.ENVIRONMENTS)
    assert read.num_classes == expected.n_classes
    assert [len(env) for env in read] == [expected.n_classes] * len(expected.domains)


def test_a_missing_paper_dataset_says_how_to_get_it_and_where_it_goes(tmp_path):
    present, (line,) = layout.paper_problems("PACS", tmp_path)
    assert not present
    assert line.startswith(f"{tmp_path / 'PACS'}/ missing. Get it with: python -c "
                           "\"from domainbed.scripts.download import download_pacs;")
    assert f"in {tmp_path} and rename its kfold/ folder to PACS/" in line
    assert line.endswith(f"so that {tmp_path / 'PACS'}/art_painting/<class>/<image> exists")


def test_empty_files_pass_the_presence_checks_and_fail_the_readability_one(tmp_path):
    root = fake_paper_dataset(tmp_path, "PACS", empty_files=True)
    expected = layout.PAPER_LAYOUTS["PACS"]
    files = [root / d / f"class{c:03d}" / "0.jpg" for d in expected.domains
             for c in range(expected.n_classes)]
    assert layout.paper_problems("PACS", tmp_path) == (True, [
        f"{f} is not a readable image (UnidentifiedImageError: cannot identify image file "
        f"'{f}'): replace or remove it" for f in files])


def test_paper_layout_problems_one_line_each(tmp_path):
    root = fake_paper_dataset(tmp_path, "PACS")
    (root / "kfold").mkdir()
    (root / ".DS_Store_folder").mkdir()
    (root / "photo" / "class006" / "0.png").unlink()
    (root / "sketch" / "class003" / "0.png").rename(root / "sketch" / "0.png")
    (root / "sketch" / "class003").rmdir()
    for cls in (root / "cartoon").iterdir():
        for file in cls.iterdir():
            file.unlink()
        cls.rmdir()
    (root / "cartoon").rmdir()
    present, problems = layout.paper_problems("PACS", tmp_path)
    assert present and len(problems) == 6, problems
    assert problems[0].startswith(f"{root}/ lacks domain folder(s) cartoon (PACS has "
                                  "art_painting, cartoon, photo, sketch): fetch it again; "
                                  f"by hand: unpack PACS.zip")
    assert problems[1] == (f"{root / '.DS_Store_folder'}/ is not a domain of PACS, but "
                           f"DomainBed reads every folder of {root}/ as one: move it out")
    assert problems[2].startswith(f"{root / 'kfold'}/ is not a domain of PACS")
    assert problems[3] == (f"{root / 'sketch'}/ holds 6 class folders, PACS has 7 in every "
                           "domain: fetch that domain again")
    assert problems[4].startswith(f"{root / 'sketch'}/ lacks class folder(s) class003 ")
    assert problems[5].startswith(f"{root / 'photo' / 'class006'}/ holds no image")


def test_the_doctor_section_checks_paper_and_own_datasets(tmp_path, monkeypatch):
    from domainbed_patch import own_datasets
    data_dir = tmp_path / "data"
    fake_paper_dataset(data_dir, "VLCS")
    fake_paper_dataset(data_dir, "PACS")
    (data_dir / "PACS" / "photo" / "class000" / "0.png").write_bytes(b"broken")
    own = write_image_folder(tmp_path / "own", DOMAINS, CLASSES, per_class=1)
    own_datasets.save({"Mine": {"folder": str(own), "domains": DOMAINS, "classes": CLASSES}})
    lines, healthy = layout.doctor_lines(str(data_dir))
    assert not healthy
    assert "  [ok] VLCS            VLCS/             4 domains x 5 classes" in lines
    assert "  [!!] PACS            PACS/             1 problem(s):" in lines
    assert any(l.startswith(f"  [!!]     {data_dir}/PACS/photo/class000/0.png is not a "
                            "readable image") for l in lines)
    assert any(l.startswith("  [!!] OfficeHome      office_home/      ") and "missing." in l
               for l in lines)
    assert f"  [ok] Mine            {own}: 3 domains x 2 classes" in lines

    (data_dir / "PACS" / "photo" / "class000" / "0.png").unlink()
    write_image_folder(data_dir / "PACS", ["photo"], ["class000"], per_class=1)
    assert layout.doctor_lines(str(data_dir))[1]  # missing ones leave it healthy
    (own / "beta" / "dog" / "0.png").unlink()
    write_image_folder(own, ["delta"], CLASSES, per_class=1)
    lines, healthy = layout.doctor_lines(str(data_dir))
    mine = [l for l in lines if l.startswith("  [!!] Mine: ")]
    assert not healthy and mine == [
        f"  [!!] Mine: {own / 'beta' / 'dog'}/ holds no image (none of "
        f"{' '.join(layout.image_extensions())}): add images or remove the folder",
        f"  [!!] Mine: {own}/ now has domains alpha, beta, delta, gamma, registered with "
        f"alpha, beta, gamma: run hessian-dg dataset add Mine {own} --force"]
