"""``hessian-dg setup`` deletes nothing it did not make and checks what it installed.

Real git on the shared bare mirror of DomainBed (no network), in temporary folders.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from domainbed_patch import locate
from domainbed_patch.setup_domainbed import (
    DestinationError,
    SetupError,
    install_domainbed,
    is_domainbed_checkout,
)

MIRROR = Path(os.environ.get("HESSIAN_DG_DOMAINBED_MIRROR",
                             "/work/shared/domainbed/DomainBed.git"))
PINNED = locate.PINNED_COMMIT
#: The first parent of the pinned commit in DomainBed's history.
PARENT = "dad3ca34803aa6dc62dfebe9ccfb57452f0bb821"

pytestmark = pytest.mark.skipif(not (MIRROR / "HEAD").is_file(),
                                reason=f"no DomainBed mirror at {MIRROR}")


def _setup(*argv):
    """The real command, in its own process."""
    return subprocess.run(["hessian-dg", "setup", "--source", str(MIRROR), *argv],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """DomainBed at the pinned commit, unpacked once from the mirror."""
    path = tmp_path_factory.mktemp("setup") / "DomainBed"
    assert install_domainbed(path, str(MIRROR)).startswith(f"DomainBed {PINNED[:12]} installed")
    return path


def test_a_users_folder_survives_with_and_without_force(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("two years of work")
    for flags in ([], ["--force"]):
        done = _setup("--dest", str(user), *flags)
        assert done.returncode == 2, done
        line = done.stderr.strip()
        assert "\n" not in line and line.startswith("hessian-dg: error: ")
        assert f"--dest {user} exists and is not a DomainBed checkout" in line
        assert "give a new or empty folder" in line
        assert (user / "thesis.tex").read_text() == "two years of work"
        assert sorted(p.name for p in user.iterdir()) == ["thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no staging left


def test_a_dest_that_is_a_file_is_one_line(tmp_path):
    target = tmp_path / "file"
    target.write_text("keep")
    done = _setup("--dest", str(target))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"hessian-dg: error: --dest {target} is a file, not a "
                                   "folder; give the path of a new or empty folder")
    assert target.read_text() == "keep"


def test_installs_the_pinned_commit_into_a_new_or_empty_folder(installed, tmp_path):
    assert is_domainbed_checkout(installed)
    assert locate.read_commit(installed) == PINNED
    assert (installed / "domainbed" / "algorithms.py").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "installed" in install_domainbed(empty, str(MIRROR))
    assert locate.read_commit(empty) == PINNED
    assert install_domainbed(empty, str(MIRROR)) == \
        f"DomainBed {PINNED[:12]} is already at {empty}"


def test_another_commit_is_replaced_only_with_force(installed, tmp_path):
    checkout = tmp_path / "DomainBed"
    shutil.copytree(installed, checkout)
    (checkout / "domainbed" / "mine.py").write_text("")
    with pytest.raises(DestinationError, match=f"holds DomainBed at {PINNED}, not {PARENT}; "
                       "rerun with --force"):
        install_domainbed(checkout, str(MIRROR), commit=PARENT)
    assert (checkout / "domainbed" / "mine.py").exists()
    message = install_domainbed(checkout, str(MIRROR), commit=PARENT, force=True)
    assert message.startswith(f"DomainBed {PARENT[:12]} installed at {checkout}, replacing")
    assert f"not the pinned {PINNED}" in message
    assert locate.read_commit(checkout) == PARENT
    assert not (checkout / "domainbed" / "mine.py").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DomainBed"]


def test_a_missing_commit_leaves_the_checkout_as_it_was(installed, tmp_path):
    checkout = tmp_path / "DomainBed"
    shutil.copytree(installed, checkout)
    with pytest.raises(SetupError, match="has no commit 0123456789abcdef"):
        install_domainbed(checkout, str(MIRROR), commit="0123456789abcdef", force=True)
    assert locate.read_commit(checkout) == PINNED and is_domainbed_checkout(checkout)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DomainBed"]


def test_a_repository_that_is_not_domainbed_is_not_installed(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    git = ["git", "-C", str(other), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "--quiet", str(other)], check=True)
    (other / "README").write_text("not DomainBed")
    subprocess.run(git + ["add", "README"], check=True)
    subprocess.run(git + ["commit", "--quiet", "-m", "x"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    with pytest.raises(SetupError, match=f"at {head} is not DomainBed: it has no "
                       "domainbed/__init__.py"):
        install_domainbed(tmp_path / "dest", str(other), commit=head)
    assert not (tmp_path / "dest").exists()


def test_a_clone_is_checked_out_at_the_pinned_commit(tmp_path):
    """The network path (git clone + checkout), through a file:// URL of the mirror."""
    dest = tmp_path / "clone"
    install_domainbed(dest, MIRROR.resolve().as_uri())
    assert (dest / ".git").is_dir() and is_domainbed_checkout(dest)
    assert locate.read_commit(dest) == PINNED
    with pytest.raises(SetupError, match="has no commit 0123456789abcdef"):
        install_domainbed(tmp_path / "clone2", MIRROR.resolve().as_uri(),
                          commit="0123456789abcdef")
    assert not (tmp_path / "clone2").exists()
