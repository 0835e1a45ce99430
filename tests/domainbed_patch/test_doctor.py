"""``hessian-dg doctor``: the plugin's names come from the registration's one list."""
import pytest

from domainbed_patch import doctor, registration

pytestmark = pytest.mark.integration


def test_the_registry_line_names_the_plugins_algorithms_from_one_place(monkeypatch, tmp_path):
    lines, healthy = doctor.report(str(tmp_path))
    assert healthy, lines
    assert "  [ok] HGP and Hutchinson in DomainBed's registry" in lines
    monkeypatch.setattr(registration, "PLUGIN_ALGORITHMS",
                        (*registration.PLUGIN_ALGORITHMS, "NotRegistered"))
    lines, healthy = doctor.report(str(tmp_path))
    assert not healthy
    assert ("  [!!] HGP and Hutchinson and NotRegistered in DomainBed's registry; "
            "missing: NotRegistered") in lines
