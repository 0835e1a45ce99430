"""``hessian-dg dataset add|list|remove``: the user's own image-folder datasets.

``add NAME FOLDER`` checks ``FOLDER`` (``FOLDER/<domain>/<class>/<image>``, the same
classes in every domain, no empty class, every image readable; hidden folders
skipped) and records it in the registry that every process importing DomainBed's
``datasets`` reads (:mod:`domainbed_patch.own_datasets`). From then on ``NAME`` is a
dataset for DomainBed's train, sweep and collect_results and for hessian-dg's
commands, with no file of DomainBed edited; ``--data_dir`` is not used for it.
"""
from __future__ import annotations

from domainbed_patch import locate, own_datasets

HELP = "your own image-folder datasets for DomainBed: add | list | remove"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("dataset", help=HELP, description=(
        "add NAME FOLDER checks FOLDER (FOLDER/<domain>/<class>/<image>: the same classes "
        "in every domain, no empty class, every image readable; hidden folders skipped) "
        "and registers it: DomainBed's train, sweep and collect_results and hessian-dg's "
        "commands then know NAME as a dataset (--data_dir is not used for it)"))
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="check FOLDER and register it as dataset NAME")
    add.add_argument("name")
    add.add_argument("folder")
    add.add_argument("--force", action="store_true", help="replace an entry of that name")
    add.add_argument("--n_workers", type=int, help="data-loader workers per split in "
                     "DomainBed's train (default: DomainBed's N_WORKERS, 8)")
    add.set_defaults(func=run_add)
    listing = actions.add_parser("list", help="the registered datasets, where the registry is")
    listing.set_defaults(func=run_list)
    remove = actions.add_parser("remove", help="unregister NAME (its folder stays)")
    remove.add_argument("name")
    remove.set_defaults(func=run_remove)


def run_add(args) -> int:
    locate.ensure_domainbed_importable()
    entry = own_datasets.add(args.name, args.folder, force=args.force,
                             n_workers=args.n_workers)
    print(f"dataset {args.name}: {entry['folder']}, domains {', '.join(entry['domains'])} "
          f"(test environments 0..{len(entry['domains']) - 1}), {len(entry['classes'])} "
          f"classes; registered in {own_datasets.registry_path()}")
    return 0


def run_list(args) -> int:
    entries = own_datasets.load()
    print(f"registry: {own_datasets.registry_path()}")
    if not entries:
        print("no own datasets (add one with: hessian-dg dataset add NAME FOLDER)")
    for name, entry in sorted(entries.items()):
        print(f"{name:<16} {entry['folder']}  domains: {', '.join(entry['domains'])}; "
              f"{len(entry['classes'])} classes")
    return 0


def run_remove(args) -> int:
    own_datasets.remove(args.name)
    print(f"dataset {args.name} removed from {own_datasets.registry_path()}")
    return 0
