import json

import pytest

from harness.errors import EnvironmentProblem, SpecError
from harness.faults import choose, netem, nftables
from harness.spec import Loss, Params

from .lost_ack_trial import EXP, NETEM, NO_NETEM


def test_nft_drops_pure_acks_from_the_server_when_it_closes_first():
    rules = nftables.ruleset(Params(final_ack_loss=Loss("first", k=2)), EXP.port)
    assert 'hook ingress device "eth0"' in rules
    assert ("meta protocol ip tcp sport 7777 tcp dport @CLIENT_PORT@ tcp flags & (fin | syn | rst | psh | ack | urg)"
            " == ack") in rules
    # no payload: IP length == 20 + TCP header length, for every header length
    assert "ip length . @th,96,8 { 40 . 0x50, 44 . 0x60," in rules and "80 . 0xf0 }" in rules
    assert 'counter name "final_acks" numgen inc mod 64 { 0, 1 } counter name "dropped" drop' in rules


def test_nft_client_first_ipv6_all():
    rules = nftables.ruleset(Params(close_first="client", family="ipv6", final_ack_loss=Loss("all")), EXP.port)
    assert "meta protocol ip6 tcp dport 7777" in rules
    assert "ip6 length . @th,96,8 { 20 . 0x50," in rules
    assert "numgen" not in rules


def test_nft_seeded_pattern_is_the_set():
    loss = Loss("random", p=0.5, seed=7)
    rules = nftables.ruleset(Params(final_ack_loss=loss), EXP.port)
    from harness.faults.pattern import dropped_copies
    assert "{ " + ", ".join(map(str, dropped_copies(loss))) + " }" in rules


def test_nft_counters_are_the_trials_own_tables():
    doc = {"nftables": [{"metainfo": {}},
                        {"counter": {"table": "harness_fault_7777", "name": "final_acks", "packets": 4}},
                        {"counter": {"table": "harness_fault_7777", "name": "dropped", "packets": 3}},
                        {"counter": {"table": "harness_fault_7778", "name": "dropped", "packets": 99}},
                        {"counter": {"table": "other", "name": "dropped", "packets": 99}}]}
    assert nftables.parse_counters(json.dumps(doc), 7777) == {"final_acks": 4, "dropped": 3}
    # 4 pure ACKs came; copies 0 and 1 of them were the ones to drop
    counts = nftables.Nftables().counts(json.dumps(doc), Params(final_ack_loss=Loss("first", k=2)), 7777)
    assert counts == {"final_acks_matched": 4, "final_acks_dropped": 3, "dropped_copies": [0, 1]}


def test_nft_rules_of_two_trials_in_one_lab_are_apart():
    a, b = (nftables.ruleset(Params(final_ack_loss=Loss("all")), port) for port in (7777, 7778))
    assert "table netdev harness_fault_7777 {" in a and "tcp sport 7777 tcp dport" in a
    assert "table netdev harness_fault_7778 {" in b and "tcp sport 7778 tcp dport" in b


def test_netem_commands_ipv4_all():
    assert netem.commands(Params(final_ack_loss=Loss("all")), EXP.port) == [
        ["ip", "link", "add", "hfault0", "type", "ifb"],
        ["ip", "link", "set", "hfault0", "up"],
        ["tc", "qdisc", "add", "dev", "hfault0", "root", "netem", "loss", "100%"],
        ["tc", "qdisc", "add", "dev", "eth0", "handle", "ffff:", "ingress"],
        ["tc", "filter", "add", "dev", "eth0", "parent", "ffff:", "protocol", "ip", "prio", "1", "u32",
         "match", "ip", "protocol", "6", "0xff", "match", "ip", "sport", "7777", "0xffff",
         "match", "u8", "0x10", "0xff", "at", "33",
         "action", "mirred", "egress", "redirect", "dev", "hfault0"],
    ]


def test_netem_commands_ipv6_seeded():
    cmds = netem.commands(Params(close_first="client", family="ipv6",
                                 final_ack_loss=Loss("random", p=0.5, seed=7)), EXP.port)
    assert cmds[2] == ["tc", "qdisc", "add", "dev", "hfault0", "root", "netem",
                       "loss", "random", "50%", "seed", "7"]
    text = " ".join(cmds[4])
    assert "parent ffff: protocol ipv6 prio 1 u32 match ip6 protocol 6 0xff" in text
    assert "match ip6 dport 7777 0xffff match u8 0x10 0xff at 53 action mirred" in text


def test_netem_cannot_drop_the_first_k():
    with pytest.raises(ValueError):
        netem.commands(Params(final_ack_loss=Loss("first", k=1)), EXP.port)


def test_netem_drops_from_tc_stats():
    out = "qdisc netem 8001: root refcnt 2 limit 1000 loss 100%\n Sent 0 bytes 0 pkt (dropped 3, overlimits 0 requeues 0)\n"
    assert netem.Netem().counts(out, Params(final_ack_loss=Loss("all")), EXP.port) == \
        {"final_acks_dropped": 3, "dropped_copies": [0, 1, 2]}
    # random loss: netem does not say which copies it dropped
    assert netem.Netem().counts(out, Params(final_ack_loss=Loss("random", p=0.5, seed=7)), EXP.port) == \
        {"final_acks_dropped": 3}
    with pytest.raises(ValueError):
        netem.parse_drops("Cannot find device")


def test_netem_scripts_are_its_commands_in_order():
    install, readout = netem.Netem().scripts(Params(final_ack_loss=Loss("all")), EXP.port)
    assert install.startswith("ip link add hfault0 type ifb && ip link set hfault0 up && tc qdisc add")
    assert install.count(" && ") == 4
    assert readout == "tc -s qdisc show dev hfault0"


def test_nft_scripts_feed_the_ruleset_and_read_counters():
    p = Params(final_ack_loss=Loss("first", k=2))
    install, readout = nftables.Nftables().scripts(p, EXP.port)
    # the rule is for the trial's connection: the client port the namespace has on 7777
    assert "ss -Htn state established '( sport = :7777 or dport = :7777 )'" in install
    assert install.endswith(f"sed \"s/@CLIENT_PORT@/${{port:-7777}}/\" <<'RULES' | flock {nftables.LOCK} nft -f -\n"
                            f"{nftables.ruleset(p, EXP.port)}RULES\n")
    assert readout == f"flock {nftables.LOCK} nft -j list table netdev harness_fault_7777"


def test_auto_picks_nftables_without_netem_and_says_why():
    backend, why = choose.choose("auto", [Loss("all")], NO_NETEM, "x.yaml")
    assert backend.name == "nftables"
    assert "no netem" in why and "u32_mirred" in why


def test_auto_picks_netem_when_the_kernel_has_it_and_it_can_express_the_loss():
    assert choose.choose("auto", [Loss("all")], NETEM, "x.yaml")[0].name == "netem"
    assert choose.choose("auto", [Loss("first", k=1)], NETEM, "x.yaml")[0].name == "nftables"


def test_asking_for_netem_without_it_is_one_clear_line():
    with pytest.raises(EnvironmentProblem) as exc:
        choose.choose("netem", [Loss("all")], NO_NETEM, "x.yaml")
    msg = str(exc.value)
    assert msg.startswith("x.yaml: fault_backend: netem is not available on this kernel")
    assert "\n" not in msg


def test_asking_for_netem_for_first_k_is_a_spec_error():
    with pytest.raises(SpecError, match="^x.yaml: fault_backend: netem cannot drop first 2"):
        choose.choose("netem", [Loss("first", k=2)], NETEM, "x.yaml")


def test_asking_for_nftables_says_so():
    assert choose.choose("nftables", [Loss("all")], NETEM, "x.yaml")[1] == "nftables, as the experiment asks"


def test_random_loss_goes_to_netem_only_where_it_can_be_seeded():
    seeded = Loss("random", p=0.5, seed=7)
    assert choose.choose("auto", [seeded], NETEM, "x.yaml")[0].name == "netem"
    unseeded_netem = {**NETEM, "netem_seed": False}  # bookworm's iproute2 6.1 has no `seed`
    backend, why = choose.choose("auto", [seeded], unseeded_netem, "x.yaml")
    assert backend.name == "nftables" and why == "auto: netem cannot drop every loss pattern asked for"
    with pytest.raises(SpecError, match="reproducible only with a seed"):
        choose.choose("netem", [seeded], unseeded_netem, "x.yaml")
