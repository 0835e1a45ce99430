"""A throwaway git checkout with one tracked file per folder, for provenance tests."""
import subprocess
from pathlib import Path


def make_checkout(root: Path, folders) -> str:
    """``root`` as a git repository with ``<folder>/code.py`` committed for each of
    ``folders``; returns the commit."""
    def git(*argv):
        return subprocess.run(["git", "-C", str(root), *argv], capture_output=True,
                              text=True, check=True).stdout.strip()
    root.mkdir(parents=True)
    git("init", "-q")
    for folder in folders:
        (root / folder).mkdir()
        (root / folder / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code")
    return git("rev-parse", "HEAD")
