"""Shared test configuration: hypothesis profiles and torch threads sized for a 2-core CI machine."""

import os

import torch
from hypothesis import HealthCheck, settings

# pytest-xdist workers share the cores: each takes its share of intra-op threads, so that
# `-n 2` on two cores runs two single-threaded workers instead of four contending threads.
torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
