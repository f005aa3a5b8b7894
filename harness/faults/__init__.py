"""Faults between the close and the measurement: one module per backend, one small interface.

A backend drops the final ACK of the close (and each re-send of it) at the
receiver's ingress, so both TCP stacks see loss on the wire. It is two shell
scripts for fault-agent (images/src/fault_agent.sh), which runs in a container
of its own, the only one with NET_ADMIN, inside the receiver's namespace: one
installs the drop, one prints the kernel's counters. The namespace's end takes
every rule with it.
"""

from __future__ import annotations

from typing import Any, Protocol

from harness.spec import Params


class FaultBackend(Protocol):
    name: str

    def scripts(self, p: Params, port: int) -> tuple[str, str]:
        """(install, readout): shell scripts that drop p.final_ack_loss on the connection to the
        server's `port` and print the counters (of that trial's drop alone: a shared lab has several)."""

    def where(self, side: str) -> str:
        """The injection point, as the report names it."""

    def counts(self, readout: str, p: Params, port: int) -> dict[str, Any]:
        """The readout script's output -> final_acks_dropped, ...; ValueError if it is not one."""
