"""Which backend applies an experiment's losses, from what the kernel was probed to have. Pure."""

from __future__ import annotations

from harness.errors import EnvironmentProblem, SpecError
from harness.faults import FaultBackend
from harness.faults.netem import Netem, supports
from harness.faults.nftables import Nftables
from harness.spec import Loss

NETEM_NEEDS = ("ifb", "ingress_qdisc", "u32_mirred", "netem")


def netem_missing(caps: dict[str, bool]) -> list[str]:
    return [k for k in NETEM_NEEDS if not caps.get(k)]


def choose(requested: str, losses: list[Loss], caps: dict[str, bool], source: str,
           resets: bool = False) -> tuple[FaultBackend, str]:
    """(backend, one line saying why) for the losses an experiment asks for, and its RSTs
    (final_ack_reset), which only nftables can craft."""
    missing = netem_missing(caps)
    seed = caps.get("netem_seed", False)
    if requested == "netem":
        if missing:
            raise EnvironmentProblem(
                f"{source}: fault_backend: netem is not available on this kernel "
                f"(missing: {', '.join(missing)}); use fault_backend: auto or nftables")
        unsupported = [loss.label() for loss in losses if not supports(loss, seed)]
        if resets:
            raise SpecError(source, "fault_backend", "netem cannot answer a final ACK with a RST "
                                                     "(final_ack_reset); use fault_backend: auto or nftables")
        if unsupported:
            why = "" if seed else " (random loss is reproducible only with a seed, which this iproute2 lacks)"
            raise SpecError(source, "fault_backend", f"netem cannot drop {', '.join(unsupported)}{why}; "
                                                     "use fault_backend: auto or nftables")
        return Netem(), "netem, as the experiment asks"
    if requested == "auto" and not missing and not resets and all(supports(loss, seed) for loss in losses):
        return Netem(), "auto: this kernel has netem"
    if not caps.get("nftables"):
        raise EnvironmentProblem("no fault backend works here: this kernel has neither netem nor nftables")
    if requested == "nftables":
        return Nftables(), "nftables, as the experiment asks"
    if missing:
        return Nftables(), f"auto: this kernel has no netem (missing: {', '.join(missing)})"
    if resets:
        return Nftables(), "auto: only nftables answers a final ACK with a RST"
    return Nftables(), "auto: netem cannot drop every loss pattern asked for"


def named(name: str) -> FaultBackend:
    """The backend a run directory names, to read its counters again."""
    backends: dict[str, FaultBackend] = {"nftables": Nftables(), "netem": Netem()}
    if name not in backends:
        raise ValueError(f"unknown fault backend {name!r}")
    return backends[name]
