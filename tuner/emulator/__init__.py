"""The local AWS: SageMaker runtime served by an emulated endpoint, the control plane by moto,
and an autoscaler that enforces the registered policy with the simulator's controller.

Importing this package starts nothing; :class:`LocalAws` does, and only on ``start()``.
"""

from tuner.clock import VirtualClock
from tuner.emulator.local import EmulatorConfig, EmulatorError, LocalAws
from tuner.emulator.server import HttpLimits
from tuner.emulator.tokens import LlmServerSpec

__all__ = [
    "EmulatorConfig",
    "EmulatorError",
    "HttpLimits",
    "LlmServerSpec",
    "LocalAws",
    "VirtualClock",
]
