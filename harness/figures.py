"""The figures of a trial record by name: which the tables show, which are counts, ports or labels,
and which an expectation may bound. Names (and the one value a label is read against): record.py
holds the values."""

from __future__ import annotations

# The figures of a trial shown in the tables, in order: (field, heading).
FIGURES = (
    ("time_wait_s", "TIME_WAIT (s)"),
    ("fin_wait2_s", "FIN_WAIT2 (s)"),
    ("rebind_plain_s", "bind() plain (s)"),
    ("rebind_reuseaddr_s", "bind() SO_REUSEADDR (s)"),
    ("probe_bind_s", "bind() probe (s)"),
    ("probe_bind_failures", "bind() probe failures"),
    ("probe_bind_errno", "bind() probe errno"),
    ("restart_s", "restart up (s)"),
    ("bind_errors", "bind() errors"),
    ("final_acks_dropped", "ACKs dropped"),
    ("fin_retransmits", "FIN retransmits"),
    ("last_fin_s", "last FIN (s)"),
    ("final_acks_reset", "ACKs answered with RST"),
    ("server_rsts", "server RSTs"),
    ("client_rsts", "client RSTs"),
    ("server_exit_status", "server exit status"),
    ("tw_entered", "TIME_WAIT sockets (kernel count)"),
    ("tw_peak", "TIME_WAIT sockets (peak seen)"),
    ("tw_overflow", "TIME_WAIT overflows"),
    ("client_tw_s", "client TIME_WAIT (s)"),
    ("client_tw_port", "client TIME_WAIT port"),
    ("reconnect_s", "reconnect (s)"),
    ("reconnect_port", "reconnect port"),
    ("reconnect_failures", "reconnect failures"),
    ("reconnect_connected", "reconnect connected"),
    ("fixed_port_s", "fixed port free (s)"),
    ("fixed_port_failures", "fixed port failures"),
    ("fixed_port_connected", "fixed port connected"),
    ("same_port_syn_s", "SYN from the old port (s)"),
    ("same_port_tw_acks", "old ACKs for it"),
    ("same_port_accepted_s", "new connection (s)"),
    ("same_port_isn_offset", "new ISN - old next seq"),
    ("restart_blocked_by", "restart blocked by"),
    ("old_reuseaddr_inferred", "old SO_REUSEADDR (inferred)"),
    ("new_reuseaddr_inferred", "new SO_REUSEADDR (inferred)"),
)
# Figures shown only when some trial ran a server of the user's own (the `server:` section).
SHOWN_FOR_OWN_SERVER = frozenset({"restart_blocked_by", "old_reuseaddr_inferred", "new_reuseaddr_inferred"})
# Figures that say yes or no, and those that are words.
FLAGS = frozenset({"old_reuseaddr_inferred", "new_reuseaddr_inferred", "fixed_port_connected", "reconnect_connected"})
WORDS = frozenset({"restart_blocked_by", "probe_bind_errno"})
# Words an expectation may name exactly (`probe_bind_errno: EADDRINUSE`).
EXACT_WORDS = ("probe_bind_errno",)
# Figures a table shows when some case sets one of these case variables away from its default,
# and only then: those every trial measures but only some experiments ask about (so the book's
# tables keep their columns), and the client's TIME_WAIT, whose "-" (never) is the finding when
# no trial has one. Other figures show when some trial has a value.
SHOWN_FOR = {
    "fin_wait2_s": ("client_close",),
    "client_tw_s": ("watch_client",),
    "probe_bind_s": ("bind_probe",),
    "probe_bind_failures": ("bind_probe",),
    "probe_bind_errno": ("bind_probe",),
    "last_fin_s": ("client_sysctls", "server_sysctls"),
    "final_acks_reset": ("final_ack_reset",),
    "server_rsts": ("server_stop", "final_ack_reset"),
    "client_rsts": ("server_stop", "final_ack_reset"),
    "server_exit_status": ("server_stop",),
    "tw_entered": ("connections", "final_ack_reset"),
    "tw_peak": ("connections",),
    "tw_overflow": ("connections",),
}
# Times the capture gives (packets' kernel timestamps), not the agents' polls: no poll's window blurs them.
FROM_CAPTURE = frozenset({"last_fin_s", "same_port_syn_s", "same_port_accepted_s"})
# Figures that are whole numbers: counts, and the server's exit status.
COUNTS = frozenset({"bind_errors", "final_acks_dropped", "final_acks_matched", "fin_retransmits",
                    "final_acks_seen", "tw_timer_restarts", "restart_failures_other", "final_acks_reset",
                    "server_rsts", "client_rsts", "server_exit_status", "tw_entered", "tw_peak", "tw_overflow",
                    "fixed_port_failures", "reconnect_same_port", "reconnect_failures", "same_port_syns", "same_port_tw_acks",
                    "same_port_isn_offset", "probe_bind_failures"})
PORTS = frozenset({"client_tw_port", "reconnect_port"})
# Counts compare does not judge: the tries the harness paces (the failures before a bind(), a
# connect() or a restart worked, the old ACKs its SYNs drew), which follow from how long the kernel
# held the port, a time compare judges, and from the pace (a slow restart skips a step, a timer
# race adds a SYN); and
# the polls' view of a count the kernel keeps (tw_peak; tw_entered is the kernel's own).
UNJUDGED = frozenset({"bind_errors", "same_port_tw_acks", "fixed_port_failures", "reconnect_failures",
                      "probe_bind_failures", "tw_peak"})
# Inferences from other figures, shown as such: compare judges what they are inferred from.
INFERRED = frozenset({"old_reuseaddr_inferred", "new_reuseaddr_inferred"})
# The ISN a TIME_WAIT picks for the listener it hands a SYN to, past its next sequence number
# (tcp_timewait_state_process: tw_snd_nxt + 65535 + 2); any other offset is a fresh ISN.
TW_ISN_OFFSET = 65535 + 2
# A figure that may be missing although the thing happened, and the figure that then bounds it:
# a TIME_WAIT shorter than the gap between two polls is counted by the kernel but timed by no poll.
UPPER_BOUNDS = {"time_wait_s": "time_wait_max_s"}
# A state a close passes through (or skips, when the peer's ACK and FIN come together) that no poll
# saw lasted less than a poll: compare reads it as 0, within the poll window, not as never.
UNSEEN_IS_BRIEF = frozenset({"fin_wait2_s"})
# Figures that name something (a port, how a process ended) rather than measure it: the tables
# show them; compare does not judge them.
LABELS = PORTS | FLAGS | WORDS | {"server_exit_status", "reconnect_same_port", "same_port_isn_offset"}
# Every number of a trial an expectation can bound: seconds after the close, milliseconds, counts.
MEASURES = ("time_wait_s", "time_wait_max_s", "fin_wait2_s", "tw_appear_s", "tw_gone_s", "rebind_plain_s",
            "rebind_reuseaddr_s", "probe_bind_s", "restart_s", "observed_s", "fin_wait2_gone_s", "poll_late_max_ms", "window_max_ms",
            "last_fin_s", "client_tw_s",
            "client_tw_appear_s", "client_tw_gone_s", "reconnect_s", "fixed_port_s", "same_port_syn_s",
            "same_port_accepted_s", *sorted(COUNTS))
