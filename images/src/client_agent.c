/* client-agent: the harness's observer inside the client's network namespace.
 *
 * The book asks whether the client's socket goes through TIME_WAIT too. This
 * watches the client's connections from the client's side, on
 * CLOCK_MONOTONIC, with the same inet_diag lookups as tw-agent (diag.h):
 *   1. on "watch" on stdin (the harness's "the client is connected"), find
 *      the client's connections to the server's port;
 *   2. every -i ms, look them up: their states, when a TIME_WAIT appears
 *      (and on which local port), when the last one is gone;
 *   3. with -r, once a connection is in TIME_WAIT (or all are gone without
 *      one), every poll: connect() from
 *      a fresh socket, as a client started again would, until the client's
 *      kernel lets one through (from a one-port range, only tcp_tw_reuse can
 *      before the TIME_WAIT ends): the first failure, and when one worked and
 *      from which local port the kernel sent it;
 *   4. with -b PORT, from the close on, every poll: bind() a fresh socket to
 *      the client's fixed local port (with -R, SO_REUSEADDR set first) and
 *      connect(), as a client with a fixed port does, until the client's
 *      kernel lets it through; the first failure and the time it worked.
 *      Let through means connected, or refused by the server: either way the
 *      SYN left. With -g the tries wait for "go" on stdin, the harness's word
 *      that the old server has ended: its listener cannot take the first SYN;
 *   5. stop when the connections are gone (and the fixed port and the
 *      reconnect worked), or
 *      after -w seconds, then stay (paused) until the harness removes it.
 * Every probe ends with SO_LINGER 0, a RST if anything: it leaves no TIME_WAIT
 * of its own on either side. The capture owns the namespace; this only
 * joins it. Events are JSON lines on stdout (events.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "agent_opts.h"
#include "anyaddr.h"
#include "diag.h"
#include "events.h"

#define SRC "client-agent"
#define TCP_STATE_ESTABLISHED 1

/* A fresh socket connect()ed to the server, from local port lport (0: the
 * kernel picks one). Returns 0 or the errno of the call named in *step; the
 * local port it had goes to *got. */
static int probe(const struct sockaddr_storage *server, socklen_t slen,
		 int lport, int reuse, int *got, const char **step)
{
	int one = 1;
	struct sockaddr_storage a;
	socklen_t alen = any_addr(server->ss_family, lport, &a);
	struct timeval limit = {.tv_sec = 1};
	struct linger abort = {.l_onoff = 1, .l_linger = 0};
	int fd = socket(server->ss_family, SOCK_STREAM, 0), err = 0;

	*step = "";
	if (fd < 0) {
		*step = "socket";
		return errno;
	}
	/* Whatever becomes of it, it ends with a RST, never a FIN: no TIME_WAIT of its own, not even
	 * when the connect() timed out and the handshake completed after (a SYN retransmitted). */
	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, sizeof(abort)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit)) ||
	    (reuse && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)))) {
		*step = "setsockopt";
		err = errno;
	} else if (lport && bind(fd, (struct sockaddr *)&a, alen)) {
		*step = "bind";
		err = errno;
	} else if (connect(fd, (const struct sockaddr *)server, slen)) {
		*step = "connect";
		err = errno;
	}
	int bound = local_port(fd);
	if (bound >= 0)
		*got = bound;
	if (close(fd) && !err) {
		*step = "close";
		err = errno;
	}
	return err;
}

/* The client's kernel let the SYN leave: connected, or refused by the server. */
static int through(int err, const char *step)
{
	return !err || (err == ECONNREFUSED && !strcmp(step, "connect"));
}

static void usage(void)
{
	fprintf(stderr, "usage: client-agent -H SERVER_ADDRESS -p SERVER_PORT [-6] [-r] "
			"[-b FIXED_LOCAL_PORT] [-R] [-g] [-i POLL_MS] [-w MAX_WAIT_S]\n");
	exit(2);
}

static int fail(const char *what)
{
	char esc[200];
	emit_at(SRC, "error", mono_now(), "\"what\":\"%s: %s\"", what,
		json_escape(strerror(errno), esc, sizeof(esc)));
	return 1;
}

int main(int argc, char **argv)
{
	struct agent_opts o = agent_opts_default();
	int reconnect = 0, fixed = 0, reuse = 0, wait_go = 0, opt;
	const char *host = NULL;

	while ((opt = getopt(argc, argv, AGENT_OPTS "H:rb:Rg")) != -1) {
		if (agent_opt(&o, opt, optarg, usage))
			continue;
		switch (opt) {
		case 'H': host = optarg; break;
		case 'r': reconnect = 1; break;
		case 'b': fixed = (int)number_arg(optarg, 1, 65535, usage); break;
		case 'R': reuse = 1; break;
		case 'g': wait_go = 1; break;
		default: usage();
		}
	}
	if (!host || !o.port || optind != argc)
		usage();
	int port = o.port, family = o.family, interval_ms = o.interval_ms;
	double max_wait = o.max_wait;
	struct sockaddr_storage server;
	socklen_t slen = any_addr(family, port, &server);
	void *addr = family == AF_INET6 ? (void *)&((struct sockaddr_in6 *)&server)->sin6_addr
					: (void *)&((struct sockaddr_in *)&server)->sin_addr;
	if (inet_pton(family, host, addr) != 1)
		usage();

	/* Polls on time under load, as tw-agent's (CAP_SYS_NICE). */
	int nice_err = setpriority(PRIO_PROCESS, 0, -20) ? errno : 0;
	struct mnl_socket *nl = mnl_socket_open(NETLINK_SOCK_DIAG);
	if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
		return fail("netlink");
	emit_at(SRC, "ready", mono_now(), "\"nice\":%d", nice_err ? 0 : -20);

	/* 1. The client's connections, once the harness says they are up. */
	if (await_command("watch", 120))
		return fail("no watch command");
	struct snapshot snap = {.port = port, .remote = 1};
	if (snapshot_dump(nl, family, &snap) < 0)
		return fail("inet_diag");
	if (!snap.nconns) {
		emit_at(SRC, "error", mono_now(), "\"what\":\"no client connection to watch\"");
		return 1;
	}
	char lports[MAX_CONNS * 8] = "";
	for (int i = 0, used = 0; i < snap.nconns; i++)
		used += snprintf(lports + used, sizeof(lports) - used, "%s%d",
				 i ? "," : "", ntohs(snap.conns[i].idiag_sport));
	emit_at(SRC, "watching", mono_now(), "\"lports\":[%s]", lports);

	/* 2.-5. Observe. */
	int tw_seen = 0, tw_gone = 0, closing = 0, reconnected = 0, reconnect_fails = 0,
	    fixed_ok = 0, fixed_fails = 0;
	char last_states[sizeof(snap.states)] = "-";
	double start = mono_now(), end = start + max_wait;
	struct poll_clock pc;
	poll_clock_start(&pc, start);
	for (;;) {
		double now = mono_now(), window_ms;
		poll_begin(&pc, now, &window_ms);
		if (snapshot_conns(nl, family, &snap) < 0)
			return fail("inet_diag");
		if (strcmp(snap.states, last_states)) {
			emit_at(SRC, "sockets", now, "\"states\":[%s]", snap.states);
			strcpy(last_states, snap.states);
		}
		int tw_port = 0;
		for (int i = 0; i < snap.nconns; i++) {
			if (snap.state[i] == TCP_STATE_TIME_WAIT && !tw_port)
				tw_port = ntohs(snap.conns[i].idiag_sport);
			if (snap.state[i] != TCP_STATE_ESTABLISHED)
				closing = 1;
		}
		if (tw_port && !tw_seen) {
			tw_seen = 1;
			emit_at(SRC, "tw_appear", now,
				"\"lport\":%d,\"expires_ms\":%u,\"window_ms\":%.3f",
				tw_port, snap.tw_expires_ms, window_ms);
		}
		if (tw_seen && !snap.time_wait && !tw_gone) {
			tw_gone = 1;
			emit_at(SRC, "tw_gone", now, "\"window_ms\":%.3f", window_ms);
		}
		/* Closed: one not ESTABLISHED seen, or all gone between two polls (a new connection
		 * from the fixed port may take a TIME_WAIT over before any poll sees it). */
		if (!snap.count)
			closing = 1;
		/* The reconnect is due once the TIME_WAIT is there, or the connections are gone
		 * without one: the server waits for it (-n) either way. */
		if (reconnect && !reconnected && (tw_seen || (closing && !snap.count))) {
			const char *step;
			int got = 0;
			double t = mono_now();
			int err = probe(&server, slen, 0, 0, &got, &step);
			char esc[200];
			if (through(err, step)) {
				reconnected = 1;
				emit_at(SRC, "reconnect", t,
					"\"ok\":true,\"lport\":%d,\"step\":\"\",\"errno\":\"\",\"failures\":%d,"
					"\"connected\":%s,\"window_ms\":%.3f",
					got, reconnect_fails, err ? "false" : "true", window_ms);
			} else if (reconnect_fails++ == 0) {
				emit_at(SRC, "reconnect", t,
					"\"ok\":false,\"lport\":%d,\"step\":\"%s\",\"errno\":\"%s\"", got, step,
					json_escape(strerror(err), esc, sizeof(esc)));
			}
		}
		if (wait_go) { /* a line of its own, in the pipe at once */
			int got = await_command("go", 0);
			if (got == -2) {
				errno = EPROTO;
				return fail("expected the harness's go");
			}
			wait_go = got != 0;
		}
		if (fixed && closing && !fixed_ok && !wait_go) {
			const char *step;
			int got = 0;
			double t = mono_now();
			int err = probe(&server, slen, fixed, reuse, &got, &step);
			if (through(err, step)) {
				fixed_ok = 1;
				emit_at(SRC, "fixed_port_ok", t,
					"\"lport\":%d,\"connected\":%s,\"failures\":%d,"
					"\"window_ms\":%.3f",
					got, err ? "false" : "true", fixed_fails, window_ms);
			} else if (fixed_fails++ == 0) {
				char esc[200];
				emit_at(SRC, "fixed_port_fail", t,
					"\"step\":\"%s\",\"errno\":\"%s\"", step,
					json_escape(strerror(err), esc, sizeof(esc)));
			}
		}
		int finished = !snap.count && (!fixed || fixed_ok) && (!reconnect || reconnected);
		if (finished || mono_now() > end) {
			emit_poll_stats(SRC, &pc, interval_ms);
			if (finished)
				emit_at(SRC, "done", mono_now(), NULL);
			else
				emit_at(SRC, "timeout", mono_now(), "\"after_s\":%.0f", max_wait);
			mnl_socket_close(nl);
			for (;;)
				pause();
		}
		poll_sleep(&pc, poll_after(&pc, interval_ms));
	}
}
