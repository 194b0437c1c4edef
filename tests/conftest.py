"""Test-wide settings: one torch thread per xdist worker, hypothesis without deadlines."""

import torch
from hypothesis import settings

# pytest -n 2 runs two workers on two cores; more threads would oversubscribe them.
torch.set_num_threads(1)

# CI machines vary in speed; deadlines would make property tests flaky.
settings.register_profile("structmat", deadline=None, max_examples=50, derandomize=False)
settings.load_profile("structmat")
