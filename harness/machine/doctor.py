"""`harness doctor`: what the harness finds on this machine, one line each, and for each missing
piece the command that adds it. Looks only: it pulls, builds and starts nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.faults.choose import netem_missing
from harness.kernellab import lab
from harness.lab import engines, facts, images
from harness.machine import tools

if TYPE_CHECKING:
    import docker

OK, MISSING, OPTIONAL = "ok", "MISSING", "absent"  # OPTIONAL: absent, and no run needs it


@dataclass(frozen=True)
class Finding:
    what: str
    state: str  # OK, MISSING or OPTIONAL
    detail: str
    fix: str = ""  # the command that adds it

    def line(self) -> str:
        fix = f" -> {self.fix}" if self.fix else ""
        return f"{self.state:<8} {self.what}: {self.detail}{fix}"


def _fault_backends(client: docker.DockerClient, base: images.BaseSource) -> list[Finding]:
    """nftables and netem, probed in a throwaway namespace on the engine's kernel; that needs an
    image with nft and tc: the lab's probe image, or the locally made base (same packages)."""
    found = images.present_tags(client)
    image = found.get("probe") or (base.image if base.present and base.origin == "local mmdebstrap" else None)
    if image is None:
        return [Finding("fault backends", OPTIONAL, "not probed yet: no image with nft and tc on the engine",
                        "harness images")]
    caps = facts.capabilities(client, image)
    nft = Finding("fault backend nftables", OK, "this kernel runs it") if caps.get("nftables") else \
        Finding("fault backend nftables", MISSING, "this kernel cannot run nftables in a container")
    gone = netem_missing(caps)
    netem = Finding("fault backend netem", OK, "this kernel runs it") if not gone else \
        Finding("fault backend netem", OPTIONAL if caps.get("nftables") else MISSING,
                f"this kernel lacks {', '.join(gone)}; runs drop with nftables instead; a kernel lab has netem",
                "harness kernel-lab up --kernel 6.1")
    return [nft, netem]


def _kernel_labs() -> Finding:
    gone = tools.missing(tools.KERNEL_LAB)
    if gone:
        return Finding("kernel labs", OPTIONAL, f"cannot boot one: {', '.join(gone)} not installed",
                       "harness setup --kernel-lab")
    labs = lab.ls()
    if not labs:
        return Finding("kernel labs", OK, "none yet; the tools to boot one are here",
                       "harness kernel-lab up --kernel 6.1")
    return Finding("kernel labs", OK, ", ".join(f"{rec['name']} ({rec['state']})" for rec in labs))


def findings(engine: str | None) -> list[Finding]:
    out: list[Finding] = []
    try:
        ref = engines.resolve(engine)
    except HarnessError as exc:
        return [Finding("engine", MISSING, str(exc)), _kernel_labs()]
    try:
        client = engines.client(ref, timeout=10)
    except HarnessError:
        local = ref.host == engines.LOCAL
        return [Finding("engine", MISSING, f"no Docker engine answers at {ref.host}",
                        "harness setup" if local else "start it, or name another with --engine"), _kernel_labs()]
    try:
        about = facts.engine(client)
        out.append(Finding("engine", OK, f"Docker {about['engine_version']}, API {about['api_version']}, "
                                         f"at {ref.host}"))
        out.append(Finding("kernel", OK, f"Linux {about['kernel']} ({about['os']}, {about['cpus']} CPUs)"))
        base = images.base_source(client)
        if base.origin:
            how = "on the engine" if base.present else \
                "pulled at the first run" if base.origin == "registry" else "made at the first run"
            out.append(Finding("base image", OK, f"{base.image} from {base.origin}, {how}"))
        else:
            out.append(Finding("base image", MISSING, "no registry answers and mmdebstrap is not installed "
                                                      "to make one locally", "harness setup"))
        tags = images.present_tags(client)
        out.append(Finding("lab images", OK, "built: " + ", ".join(sorted(tags.values()))) if tags else
                   Finding("lab images", OPTIONAL, "not built yet (the first run builds them)", "harness images"))
        out += _fault_backends(client, base)
    except HarnessError as exc:  # the engine went away, or refused a probe
        out.append(Finding("engine", MISSING, str(exc)))
    return [*out, _kernel_labs()]


def needs_fixing(found: list[Finding]) -> bool:
    return any(f.state == MISSING for f in found)
