"""Shared test settings: hypothesis is derandomised, so every run checks the same examples."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "msgpass", derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("MSGPASS_HYPOTHESIS", "msgpass"))
