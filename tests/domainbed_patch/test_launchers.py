"""Launchers: the registry, and the Slurm settings handed to submitit."""
import pytest

from domainbed_patch import launchers
from domainbed_patch.validation import UsageError


@pytest.mark.integration
def test_registry_holds_domainbeds_and_ours():
    names = launchers.launcher_names()
    for name in ("local", "dummy", "multi_gpu", "local_parallel", "slurm", "submitit_local"):
        assert name in names
    with pytest.raises(UsageError, match="unknown launcher 'lokal'.*local_parallel"):
        launchers.get_launcher("lokal")


SLURM = {"name": "slurm", "partition": "a100", "gpus_per_job": 1, "cpus_per_job": 8,
         "time_limit_minutes": 720, "max_concurrent": 64, "mem_gb": 32, "account": "dg"}


def test_slurm_settings_map_to_submitit_parameters():
    assert launchers.submitit_parameters(SLURM, "slurm") == {
        "name": "hessian-dg", "slurm_partition": "a100", "gpus_per_node": 1,
        "cpus_per_task": 8, "timeout_min": 720, "slurm_array_parallelism": 64,
        "mem_gb": 32, "slurm_account": "dg"}


def test_submitit_accepts_the_parameters(tmp_path):
    """submitit validates parameter names; the local executor takes the shared ones."""
    executor = launchers.submitit_executor(SLURM, tmp_path, "local")
    assert executor.cluster == "local"
    assert launchers.submitit_parameters(SLURM, "local") == {
        "name": "hessian-dg", "gpus_per_node": 1, "cpus_per_task": 8, "timeout_min": 720,
        "mem_gb": 32}


def test_train_command_requeues_itself_on_preemption():
    import submitit
    command = ["python", "-m", "domainbed_patch.job_runner", "--output_dir", "x"]
    delayed = launchers.TrainCommand().checkpoint(command)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert isinstance(delayed.function, launchers.TrainCommand) and delayed.args == (command,)


@pytest.mark.integration
def test_dummy_launcher_prints_domainbed_commands(capsys, tmp_path):
    from domainbed_patch import jobs, presets
    preset = presets.load_preset("smoke", presets.parse_overrides([f'output_dir="{tmp_path}"']))
    todo = jobs.make_jobs(preset)[:2]
    launchers.get_launcher("dummy")(todo, {}, tmp_path)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all("domainbed_patch.job_runner" in l for l in out)
