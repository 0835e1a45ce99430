"""Image-folder layouts as DomainBed reads them, checked before anything trains.

DomainBed's ``MultipleEnvironmentImageFolder`` reads ``root/<domain>/<class>/<image>``:
every folder of ``root`` is a domain (sorted by name; domain ``i`` is test
environment ``i``), and in each domain torchvision's ``ImageFolder`` makes every
folder a class, labelled by its position in the sorted names, with every file under
it whose name ends in an image extension. Hence what can go wrong silently or late:

- a domain that lacks a class gives every later class another label there;
- a class folder without an image makes ``ImageFolder`` refuse the whole domain;
- an unreadable image fails a job at whatever step first draws it;
- a stray folder (``__MACOSX``, ``kfold``, ``.ipynb_checkpoints``) becomes a domain
  or a class.

:func:`scan` reads a layout (for the user's own datasets, hidden folders are not
domains or classes: see :mod:`domainbed_patch.own_datasets`); the ``*_problems``
functions return one line per problem, each naming the path and what to do.
:data:`PAPER_LAYOUTS` holds, as data, the folders and class counts that DomainBed's
``download.py`` creates for the paper's five datasets and its dataset classes read;
:func:`paper_problems` checks a ``--data_dir`` against them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

#: a layout: domain -> class -> image paths (relative to the class folder), sorted.
Layout = Dict[str, Dict[str, Tuple[str, ...]]]


def image_extensions() -> tuple:
    """The extensions torchvision's ``ImageFolder`` loads (compared lower-cased)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS
    return IMG_EXTENSIONS


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _folders(path: Path, skip_hidden: bool) -> List[str]:
    """Sorted names of the folders in ``path`` (links followed, as DomainBed does)."""
    with os.scandir(path) as entries:
        names = [e.name for e in entries if e.is_dir()]
    return sorted(n for n in names if not (skip_hidden and _is_hidden(n)))


def _images(class_folder: Path) -> Tuple[str, ...]:
    """What ``ImageFolder`` loads from ``class_folder``: every file below it with an
    image extension, subfolders included."""
    extensions = image_extensions()
    found = []
    for parent, _, files in os.walk(class_folder, followlinks=True):
        for name in files:
            if name.lower().endswith(extensions):
                found.append(os.path.relpath(os.path.join(parent, name), class_folder))
    return tuple(sorted(found))


def scan(root, skip_hidden: bool = True) -> Layout:
    """The domains, classes and images under ``root``; hidden folders (names starting
    with ``.``) are neither domains nor classes when ``skip_hidden``."""
    root = Path(root)
    return {domain: {cls: _images(root / domain / cls)
                     for cls in _folders(root / domain, skip_hidden)}
            for domain in _folders(root, skip_hidden)}


def classes_of(layout: Layout) -> List[str]:
    """Every class some domain has, sorted."""
    return sorted({cls for classes in layout.values() for cls in classes})


def structure_problems(root, layout: Layout, min_domains: int = 2) -> List[str]:
    """Too few domains, a class some domain lacks, a class folder without images."""
    root = Path(root)
    if len(layout) < min_domains:
        found = ", ".join(layout) or "none"
        return [f"{root}/ holds {len(layout)} domain folder(s) ({found}); a domain "
                f"generalization dataset needs at least {min_domains}: "
                f"lay it out as {root}/<domain>/<class>/<image>"]
    problems = []
    every_class = classes_of(layout)
    for domain, classes in layout.items():
        missing = [c for c in every_class if c not in classes]
        if missing:
            problems.append(
                f"{root / domain}/ lacks class folder(s) {', '.join(missing)} that other "
                "domains have (DomainBed labels classes by their position, so later "
                "classes would be mislabelled there): add them, with images, or remove "
                "them from every domain")
    extensions = " ".join(image_extensions())
    for domain, classes in layout.items():
        for cls, images in classes.items():
            if not images:
                problems.append(f"{root / domain / cls}/ holds no image (none of "
                                f"{extensions}): add images or remove the folder")
    return problems


def unreadable_problems(root, layout: Layout, per_class: Optional[int] = None) -> List[str]:
    """Images PIL cannot open and verify: every one, or the first ``per_class`` of
    each class."""
    from PIL import Image
    root = Path(root)
    problems = []
    for domain, classes in layout.items():
        for cls, images in classes.items():
            for image in images[:per_class]:
                path = root / domain / cls / image
                try:
                    with Image.open(path) as opened:
                        opened.verify()
                except Exception as error:  # noqa: BLE001 - PIL raises many kinds
                    problems.append(f"{path} is not a readable image "
                                    f"({type(error).__name__}: {error}): replace or "
                                    "remove it")
    return problems


def layout_problems(root, per_class: Optional[int] = None) -> List[str]:
    """Every problem of an own image-folder dataset at ``root`` (hidden folders skipped)."""
    root = Path(root)
    if not root.is_dir():
        return [f"{root}/ is not a folder"]
    layout = scan(root)
    return structure_problems(root, layout) + unreadable_problems(root, layout, per_class)


@dataclass(frozen=True)
class PaperLayout:
    """What DomainBed's ``download.py`` leaves under ``<data_dir>/<folder>/``."""

    domains: Tuple[str, ...]  #: the domain folders, sorted as DomainBed sorts them
    n_classes: int  #: class folders in every domain
    by_hand: str  #: how to put the folder in place when the download link is dead


#: the paper's five datasets; their folder under --data_dir is
#: ``validation.DATASET_FOLDERS[name][0]``. Values read from DomainBed's
#: ``scripts/download.py`` (b93c22a) and its archives' contents.
PAPER_LAYOUTS: Dict[str, PaperLayout] = {
    "VLCS": PaperLayout(
        ("Caltech101", "LabelMe", "SUN09", "VOC2007"), 5,
        "unpack VLCS.tar.gz (DomainBed's link: Google Drive file "
        "1skwblH1_okBwxWxmRsp9_qi15hyPpxg8) in DATA_DIR; it holds the VLCS/ folder"),
    "PACS": PaperLayout(
        ("art_painting", "cartoon", "photo", "sketch"), 7,
        "unpack PACS.zip (DomainBed's link: Google Drive file "
        "1JFr8f805nMUelQWWmfnJR3y4_SYoN5Pd) in DATA_DIR and rename its kfold/ "
        "folder to PACS/"),
    "OfficeHome": PaperLayout(
        ("Art", "Clipart", "Product", "Real World"), 65,
        "unpack office_home.zip (DomainBed's link: Google Drive file "
        "1uY0pj7oFsjMxRwaD3Sxy0jgel0fsYXLC; origin hemanthdv.org/OfficeHome-Dataset) "
        "in DATA_DIR and rename OfficeHomeDataset_10072016/ to office_home/"),
    "TerraIncognita": PaperLayout(
        ("location_100", "location_38", "location_43", "location_46"), 10,
        "DomainBed builds it from Caltech Camera Traps' eccv_18_all_images_sm.tar.gz "
        "and eccv_18_annotations.tar.gz (lila.science): its download_terra_incognita "
        "copies the images of locations 38, 43, 46 and 100 in 10 classes into "
        "location_<n>/<class>/ folders; put those four in DATA_DIR/terra_incognita/"),
    "DomainNet": PaperLayout(
        ("clipart", "infograph", "painting", "quickdraw", "real", "sketch"), 345,
        "unpack clipart.zip, infograph.zip, painting.zip, quickdraw.zip, real.zip and "
        "sketch.zip (ai.bu.edu/M3SDA) inside DATA_DIR/domain_net/"),
}


def paper_folder(dataset: str, data_dir) -> Path:
    from domainbed_patch.validation import DATASET_FOLDERS
    return Path(data_dir) / DATASET_FOLDERS[dataset][0]


def _paper_structure(dataset: str, root: Path, expected: PaperLayout) -> List[str]:
    """Domain folders and class counts against :data:`PAPER_LAYOUTS` (DomainBed's
    classes skip no folder, hidden ones included)."""
    found = _folders(root, skip_hidden=False)
    missing = [d for d in expected.domains if d not in found]
    by_hand = expected.by_hand.replace("DATA_DIR", str(root.parent))
    problems = [f"{root}/ lacks domain folder(s) {', '.join(missing)} ({dataset} has "
                f"{', '.join(expected.domains)}): fetch it again; by hand: {by_hand}"
                ] if missing else []
    problems += [f"{root / d}/ is not a domain of {dataset}, but DomainBed reads every "
                 f"folder of {root}/ as one: move it out"
                 for d in found if d not in expected.domains]
    for domain in (d for d in expected.domains if d in found):
        n = len(_folders(root / domain, skip_hidden=False))
        if n != expected.n_classes:
            problems.append(f"{root / domain}/ holds {n} class folders, {dataset} has "
                            f"{expected.n_classes} in every domain: fetch that domain again")
    return problems


def missing_line(dataset: str, data_dir) -> str:
    """Where a paper dataset's folder comes from: DomainBed's download, else by hand."""
    from domainbed_patch import validation
    expected, root = PAPER_LAYOUTS[dataset], paper_folder(dataset, data_dir)
    return (f"{root}/ missing. Get it with: "
            f"{validation.download_command(dataset, str(data_dir))}; if that link is dead, "
            f"by hand: {expected.by_hand.replace('DATA_DIR', str(data_dir))}, so that "
            f"{root}/{expected.domains[0]}/<class>/<image> exists")


def paper_problems(dataset: str, data_dir) -> Tuple[bool, List[str]]:
    """(present, problems) of one of :data:`PAPER_LAYOUTS` under ``data_dir``: its
    domains and class counts, the same classes everywhere, no empty class, the first
    image of every class readable."""
    expected = PAPER_LAYOUTS[dataset]
    root = paper_folder(dataset, data_dir)
    if not root.is_dir():
        return False, [missing_line(dataset, data_dir)]
    problems = _paper_structure(dataset, root, expected)
    layout = scan(root, skip_hidden=False)
    layout = {d: classes for d, classes in layout.items() if d in expected.domains}
    if layout:
        problems += structure_problems(root, layout, min_domains=1)
        problems += unreadable_problems(root, layout, per_class=1)
    return True, problems


def _mark(ok: bool, text: str) -> str:
    return f"  [{'ok' if ok else '!!'}] {text}"


def doctor_lines(data_dir: str) -> Tuple[List[str], bool]:
    """``hessian-dg doctor``'s dataset section: (lines, healthy). The paper's datasets
    are checked against :data:`PAPER_LAYOUTS`, the others for presence, the own
    datasets of the registry in full (every image read). A missing dataset is
    reported but leaves the environment healthy; a broken one does not."""
    from domainbed_patch import own_datasets, validation
    lines = [f"datasets under --data_dir {data_dir or '(not given)'}:"]
    healthy = True
    for dataset, (folder, _) in validation.DATASET_FOLDERS.items():
        head = f"{dataset:<15} {folder + '/':<17}"
        if dataset in PAPER_LAYOUTS:
            present, problems = (paper_problems(dataset, data_dir) if data_dir
                                 else (False, [missing_line(dataset, "DATA_DIR")]))
            expected = PAPER_LAYOUTS[dataset]
            if present and not problems:
                lines.append(_mark(True, f"{head} {len(expected.domains)} domains x "
                                         f"{expected.n_classes} classes"))
                continue
            healthy = healthy and not present
            lines.append(_mark(False, head + (f" {len(problems)} problem(s):" if present
                                              else " " + problems[0])))
            lines += [_mark(False, f"    {p}") for p in problems if present]
            continue
        present = bool(data_dir) and os.path.isdir(os.path.join(data_dir, folder))
        lines.append(_mark(present, head + ("" if present else " missing; get it with: "
                           + validation.download_command(dataset, data_dir or "DATA_DIR"))))
    lines.append(_mark(True, "Debug28, Debug224: synthetic, no download needed"))
    try:
        entries = own_datasets.load()
    except own_datasets.OwnDatasetError as error:
        return lines + [_mark(False, str(error))], False
    lines.append(f"own datasets (registry {own_datasets.registry_path()}):"
                 + ("" if entries else " none"))
    for name, entry in sorted(entries.items()):
        problems = own_problems(name, entry)
        healthy = healthy and not problems
        if problems:
            lines += [_mark(False, f"{name}: {p}") for p in problems]
        else:
            lines.append(_mark(True, f"{name:<15} {entry['folder']}: "
                                     f"{len(entry['domains'])} domains x "
                                     f"{len(entry['classes'])} classes"))
    return lines, healthy


def own_problems(name: str, entry: dict) -> List[str]:
    """An own dataset's folder against its registry entry, and its layout."""
    folder = Path(entry["folder"])
    redo = f"hessian-dg dataset add {name} {folder} --force"
    if not folder.is_dir():
        return [f"{folder}/ is gone: move it back, or register where it is now with {redo}"]
    problems = layout_problems(folder)
    layout = scan(folder)
    if list(layout) != entry["domains"]:
        problems.append(f"{folder}/ now has domains {', '.join(layout) or 'none'}, "
                        f"registered with {', '.join(entry['domains'])}: run {redo}")
    elif classes_of(layout) != entry["classes"] and not problems:
        problems.append(f"{folder}/ now has classes {', '.join(classes_of(layout))}, "
                        f"registered with {', '.join(entry['classes'])}: run {redo}")
    return problems
