"""The parts of benchmarks/device_run.py: the run and its commands (core), the stages."""
