"""Before the first trial: every engine of the run reached, given the lab's images, its kernel
probed and its fault backend chosen; and the manifest that records it all.

The first engine named builds the images when they are missing; another engine that lacks them
gets a copy from it (`docker save | docker load`: an engine in a VM has no registry either).
"""

from __future__ import annotations

import datetime
import shlex
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness import __version__, provenance, spec
from harness.faults.choose import choose
from harness.lab import engine as lab_engine
from harness.lab import engines, facts, images, subnets
from harness.lab.ends import Ends
from harness.plan import Trial
from harness.spec import Experiment

Say = Callable[[str], None]


@dataclass
class Prepared:
    engines: dict[str, engines.Engine]
    facts: dict[str, dict[str, Any]]  # per engine, for the manifest

    def one_qdisc(self, engine: str) -> bool:
        """Whether the engine's fault backend drops with one qdisc for its whole namespace (netem)."""
        fault = self.engines[engine].fault
        return fault is not None and fault.name == "netem"


def setup_slots(cpus: int | None) -> int:
    # Container starts are CPU-bound (dockerd, containerd, runc): on 2 cores two trial setups at
    # once took twice as long each (3.3 s against 1.8 s), so more at once only delays every trial
    # and the agents' polls.
    return max(1, (cpus or 1) // 2)


def start_slots(cpus: int | None) -> int:
    # A trial's start goes through its lab's launchers, no `docker exec` of its own: its programs
    # coming up and its handshake are mostly waits, so many at a time (bench/study.py).
    return 32 * (cpus or 1)


def trial_subnets(client: Any, pool: str) -> subnets.Subnets:
    """Where trial networks get their subnets: the pool, minus what the engine (and, when it is on
    this host, the host's routes) already use."""
    local = lab_engine.is_local(client)
    return subnets.Subnets(pool, lambda: lab_engine.network_subnets(client) + (subnets.host_routes() if local else []))


def engines_named(given: list[str] | None) -> list[engines.EngineRef]:
    """The engines --engine names (none: the environment's), each once."""
    refs: dict[str, engines.EngineRef] = {}
    for name in given if given else [None]:
        ref = engines.resolve(name)
        refs.setdefault(ref.name, ref)
    return list(refs.values())


def prepare(refs: list[engines.EngineRef], exp: Experiment, trials: list[Trial], run_id: str,
            base_image: str | None, pool: str, say: Say) -> Prepared:
    engines_: dict[str, engines.Engine] = {}
    all_facts: dict[str, dict[str, Any]] = {}
    lacking: dict[str, frozenset[str]] = {}
    fields = spec.sysctl_fields(exp)
    first: images.ImageSet | None = None
    ticks = facts.wheel_ticks()  # the host's; an agent on another kernel does without them
    imgs: images.ImageSet | None  # this engine's: declared so the copy branch below is type-checked
    for ref in refs:
        client = engines.client(ref, lab_engine.TIMEOUT_S)
        quick = engines.client(ref, lab_engine.QUICK_TIMEOUT_S)
        label = "" if len(refs) == 1 else f"engine {ref.name}: "
        containers, networks = lab_engine.remove_dead(quick, unowned=False)  # so a crashed run never fails this one
        if containers or networks:
            say(f"{label}removed {containers} container(s) and {networks} network(s) left by harness runs "
                "that are no longer running")
        if first is None:
            imgs = first = images.ensure(client, say, base_image)
            if exp.server is not None:  # the user's server's image, built once, copied with the rest
                imgs = first = images.guest(client, exp.server, imgs, exp.source, say)
        else:
            imgs = images.present(client, first)
            if imgs is None:
                def say_here(line: str, label: str = label) -> None:
                    say(label + line)

                images.copy([first.base, *first.tags.values()], refs[0].env(), ref.env(), say_here)
                imgs = images.present(client, first)
                assert imgs is not None, "the copied images are there"
        engine_facts = {**facts.engine(client), **facts.probe(client, imgs, run_id)}
        lacking[ref.name] = facts.check_sysctls(client, imgs, run_id, fields, exp.source)
        mine = [t.params for t in trials if t.engine == ref.name and not t.params.sysctl_names() & lacking[ref.name]]
        losses = [p.final_ack_loss for p in mine if p.final_ack_loss.kind != "none"]
        resets = any(p.final_ack_reset for p in mine)
        backend, why = (choose(exp.fault_backend, losses, engine_facts["capabilities"], exp.source, resets)
                        if losses or resets else (None, "no loss asked for"))
        say(f"{label}Linux {engine_facts['kernel']}; fault backend: {backend.name if backend else 'none'} ({why})")
        if lacking[ref.name]:
            say(f"{label}Linux {engine_facts['kernel']} has no {', '.join(sorted(lacking[ref.name]))} in a network "
                "namespace: the cases that set it are not applicable here, and do not run (a sysctl newer than "
                "this kernel, the host's alone, or misspelt)")
        all_facts[ref.name] = {
            "host": ref.host, **engine_facts, "fault_backend": backend.name if backend else None,
            "fault_backend_why": why, "lacks_sysctls": sorted(lacking[ref.name]), "host_wheel_ticks": ticks,
            "images": {"base": imgs.base, "base_origin": imgs.base_origin, "tags": imgs.tags, "ids": imgs.ids}}
        engines_[ref.name] = engines.Engine(ref.name, engine_facts["kernel"] or "", client, quick,
                                    engines.client(ref, lab_engine.PING_TIMEOUT_S), imgs,
                                    trial_subnets(client, pool), backend,
                                    threading.Semaphore(setup_slots(engine_facts.get("cpus"))),
                                    threading.Semaphore(start_slots(engine_facts.get("cpus"))),
                                    lacks=lacking[ref.name], wheel_ticks=ticks,
                                    ends=Ends(ticks) if ticks else None)
    return Prepared(engines_, all_facts)



def manifest(exp: Experiment, run_id: str, prepared: Prepared, jobs: int, mode: str,
             close_phase: tuple[float, float] | None, phase_seed: int) -> dict[str, Any]:
    """What the run directory says about the run; the first engine's facts at the top as well."""
    first = next(iter(prepared.facts.values()))
    return {
        "experiment": exp.name, "run_id": run_id, "harness_version": __version__,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(sys.argv), "git": provenance.git(),
        **{k: v for k, v in first.items() if k != "host"},
        "engines": prepared.facts, "engine_mode": mode,
        "jobs": jobs, "close_phase": close_phase, "phase_seed": phase_seed,
    }
