"""Finding DomainBed: the three ways, the one error naming them, the commit."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from domainbed_patch import locate


def test_cache_location_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert locate.cache_location() == tmp_path / "hessian-dg" / "DomainBed"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert locate.cache_location() == Path.home() / ".cache" / "hessian-dg" / "DomainBed"


def test_read_commit_from_git_head_ref_and_marker(tmp_path):
    sha = "b93c22a1cfc3b2428398272c1a116c8de1f4139e"
    (tmp_path / ".git" / "refs" / "heads").mkdir(parents=True)
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / ".git" / "refs" / "heads" / "main").write_text(sha + "\n")
    assert locate.read_commit(tmp_path) == sha
    (tmp_path / ".git" / "HEAD").write_text(sha[::-1] + "\n")  # detached
    assert locate.read_commit(tmp_path) == sha[::-1]
    marker_only = tmp_path / "other"
    marker_only.mkdir()
    assert locate.read_commit(marker_only) is None
    (marker_only / locate.COMMIT_FILE).write_text(sha + "\n")
    assert locate.read_commit(marker_only) == sha


def _python(code, env_updates, cwd):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DOMAINBED_ROOT", "PYTHONPATH", "HESSIAN_DG_DISABLE")}
    env.update(env_updates)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_not_found_names_the_three_ways_and_the_commit(tmp_path):
    result = _python("from domainbed_patch.locate import locate; locate()",
                     {"XDG_CACHE_HOME": str(tmp_path / "empty"), "HOME": str(tmp_path)},
                     cwd=tmp_path)
    assert result.returncode != 0
    assert "DomainBedNotFoundError" in result.stderr
    for needle in ("importable", "DOMAINBED_ROOT", str(tmp_path / "empty"),
                   locate.PINNED_COMMIT, "hessian-dg setup"):
        assert needle in result.stderr, needle


@pytest.mark.integration
def test_domainbed_root_variable_serves_the_package(tmp_path):
    """With nothing importable and an empty cache, $DOMAINBED_ROOT is used."""
    root = locate.locate().root
    code = ("import domainbed.algorithms as a, domainbed_patch.locate as l; "
            "print(l.locate().how, 'HGP' in a.ALGORITHMS, a.__file__)")
    result = _python(code, {"XDG_CACHE_HOME": str(tmp_path), "DOMAINBED_ROOT": str(root)},
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    how, registered, path = result.stdout.split()
    assert (how, registered) == ("imported", "True")
    assert Path(path).resolve().is_relative_to(Path(root).resolve())


@pytest.mark.integration
def test_an_importable_domainbed_wins(tmp_path):
    root = locate.locate().root
    result = _python("import domainbed_patch.locate as l; print(l.locate().how)",
                     {"PYTHONPATH": str(root), "XDG_CACHE_HOME": str(tmp_path)}, cwd=tmp_path)
    assert result.stdout.strip() == "importable", result.stderr
