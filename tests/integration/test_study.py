"""Study-sized runs: more trials at once than Docker's default address pools allow networks."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from harness import store

from .conftest import run_id, run_objects

DOCKER_POOLS = 30  # about as many networks as Docker's default address pools give


def test_forty_trials_at_once_all_measure_on_subnets_of_the_harness(engine, forty):
    ((rc, doc, err),) = forty.values()
    assert rc == 0, err[-3000:]
    trials = doc["trials"]
    assert len(trials) == 40 and all(t["status"] == "ok" for t in trials)
    # More trial networks at once than Docker's default pools hold: each from its creation
    # until at least the trial's TIME_WAIT was over.
    made = {e["trial"]: e["mono"] for e in store.load(Path(doc["run_dir"])).events if e.get("ev") == "network"}
    spans = [(made[t["trial"]], t["close_mono"] + t["tw_gone_s"]) for t in trials]
    at_once = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert at_once > DOCKER_POOLS, at_once
    assert run_objects(engine, run_id(doc)) == ([], [])


def test_each_trial_network_had_a_subnet_of_its_own_from_the_pool(engine, forty):
    ((_, doc, _),) = forty.values()
    events = store.load(Path(doc["run_dir"])).events
    subnets = [ipaddress.ip_network(e["subnet"]) for e in events if e.get("ev") == "network"]
    assert len(subnets) == 40 and len(set(subnets)) == 40
    assert all(n.prefixlen == 29 and n.subnet_of(ipaddress.ip_network("10.199.0.0/16")) for n in subnets)
    # none overlaps a network of the engine's own (the allocator's rules: tests/unit/test_subnets.py)
    others = [ipaddress.ip_network(cfg["Subnet"]) for n in engine.networks.list()
              if not (n.attrs.get("Labels") or {}).get("io.harness.run")
              for cfg in (n.attrs.get("IPAM") or {}).get("Config") or [] if "Subnet" in cfg]
    assert not any(o.version == 4 and o.overlaps(n) for o in others for n in subnets)
