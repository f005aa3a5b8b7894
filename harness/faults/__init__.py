"""Faults between the close and the measurement: one module per backend, one small interface.

A backend drops the final ACK of the close (and each re-send of it) at the
receiver's ingress, so both TCP stacks see loss on the wire. It runs in a
container of its own, the only one with NET_ADMIN, inside the receiver's
namespace; the namespace's end takes every rule with it.
"""

from __future__ import annotations

from typing import Any, Protocol

from harness.spec import Experiment, Params


class InstalledFault(Protocol):
    where: str  # the injection point, as the report names it

    def readout(self) -> dict[str, Any]:
        """What the kernel counted: final_acks_dropped, dropped_copies, ..."""


class FaultBackend(Protocol):
    name: str

    def prepare(self, lab: Any, side: str) -> Any:
        """Start the container that will apply the fault in `side`'s namespace (early, in parallel)."""

    def install(self, lab: Any, container: Any, side: str, exp: Experiment, p: Params) -> InstalledFault:
        """Install the drop of p.final_ack_loss from that container, through the lab."""


def start_fault_container(lab: Any, side: str) -> Any:
    """The only container with NET_ADMIN: idle until a backend installs its rules by exec."""
    return lab.start("fault", side, "probe", ["sleep", "infinity"], caps=("NET_ADMIN",),
                     stream=False, own_pid=True)
