/* The TCP sockets of one port, as the kernel reports them through netlink
 * inet_diag (libmnl): what tw-agent (the server's side) and client-agent (the
 * client's side) poll every few milliseconds, and the poll clock they share. */
#ifndef HARNESS_DIAG_H
#define HARNESS_DIAG_H

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "events.h"

#define TCP_STATE_TIME_WAIT 6
#define MAX_CONNS 32 /* connections of one trial (spec: connections <= 32) */

static const char *const state_names[] = {
	"?",	     "ESTABLISHED", "SYN_SENT", "SYN_RECV",   "FIN_WAIT1",
	"FIN_WAIT2", "TIME_WAIT",   "CLOSE",    "CLOSE_WAIT", "LAST_ACK",
	"LISTEN",    "CLOSING",     "NEW_SYN_RECV",
};
#define N_STATES (int)(sizeof(state_names) / sizeof(state_names[0]))

/* What inet_diag told us about the sockets we watch on our port. */
struct snapshot {
	int port;
	int remote; /* 1: port is the peer's (the client's side), else ours */
	int count, time_wait;
	unsigned tw_expires_ms; /* largest TIME_WAIT timer left */
	unsigned tw_soonest_ms; /* smallest: the first TIME_WAIT that can end */
	char states[1024];	/* "TIME_WAIT","LISTEN": the signature we log */
	/* A dump fills conns with the port's connections (not listeners);
	 * lookups of those set conns_only, since the kernel answers a lookup
	 * for a connection that is gone with the listener, if there is one.
	 * state[i] is conns[i]'s state at the last lookup, -1 once gone. */
	struct inet_diag_sockid conns[MAX_CONNS];
	int state[MAX_CONNS];
	int nconns, conns_only, cur;
	int family; /* a lookup's: its answer may be another family's (a dual-stack listener) */
};

static int diag_cb(const struct nlmsghdr *nlh, void *data)
{
	struct snapshot *s = data;
	const struct inet_diag_msg *m = mnl_nlmsg_get_payload(nlh);
	int st = m->idiag_state;
	int port = ntohs(s->remote ? m->id.idiag_dport : m->id.idiag_sport);

	if (port != s->port || (s->conns_only && !m->id.idiag_dport) ||
	    (s->family && m->idiag_family != s->family))
		return MNL_CB_OK;
	if (s->conns_only)
		s->state[s->cur] = st;
	else if (m->id.idiag_dport && s->nconns < MAX_CONNS) {
		s->state[s->nconns] = st;
		s->conns[s->nconns++] = m->id;
	}
	s->count++;
	if (st == TCP_STATE_TIME_WAIT) {
		s->time_wait++;
		if (m->idiag_expires > s->tw_expires_ms)
			s->tw_expires_ms = m->idiag_expires;
		if (m->idiag_expires < s->tw_soonest_ms)
			s->tw_soonest_ms = m->idiag_expires;
	}
	size_t used = strlen(s->states);
	snprintf(s->states + used, sizeof(s->states) - used, "%s\"%s\"",
		 used ? "," : "", st < N_STATES ? state_names[st] : "?");
	return MNL_CB_OK;
}

/* One inet_diag request. With id == NULL it dumps every TCP socket of the
 * family, which walks the kernel's whole (host-sized) hash table; with an id
 * it asks for that one connection, a single hash-bucket lookup, cheap enough
 * to repeat every few milliseconds however busy the host is. Returns 0 when
 * the socket exists (or the dump ended), 1 when the kernel has no such
 * socket, -1 on error. */
static int diag_query(struct mnl_socket *nl, int family,
		      const struct inet_diag_sockid *id, struct snapshot *s)
{
	static unsigned seq;
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct inet_diag_req_v2 *req;

	nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
	nlh->nlmsg_flags = NLM_F_REQUEST | (id ? 0 : NLM_F_DUMP);
	nlh->nlmsg_seq = ++seq;
	req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req));
	req->sdiag_family = family;
	req->sdiag_protocol = IPPROTO_TCP;
	req->idiag_states = ~0U;
	if (id) {
		req->id = *id;
		req->id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
		req->id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	}
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -1;
	unsigned portid = mnl_socket_get_portid(nl);
	for (;;) {
		int n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0)
			return -1;
		int ret = mnl_cb_run(buf, n, seq, portid, diag_cb, s);
		if (ret < 0)
			return errno == ENOENT ? 1 : -1;
		if (id || ret == MNL_CB_STOP)
			return 0;
	}
}

static void snapshot_reset(struct snapshot *s)
{
	s->count = s->time_wait = 0;
	s->tw_expires_ms = 0;
	s->tw_soonest_ms = ~0U;
	s->states[0] = 0;
}

/* Dump once: every socket on the port, remembering its connections. */
static int snapshot_dump(struct mnl_socket *nl, int family, struct snapshot *s)
{
	snapshot_reset(s);
	s->nconns = 0;
	s->conns_only = 0;
	return diag_query(nl, family, NULL, s);
}

/* The listener bound to the wildcard address on the port, if any (in s, as
 * a dump would show it): one lookup of (any address, the port), which the
 * kernel answers with that listener; one bound to a single address, only a
 * dump finds. Returns as diag_query. */
static inline int snapshot_listener(struct mnl_socket *nl, int family, struct snapshot *s)
{
	struct inet_diag_sockid id = {.idiag_sport = htons(s->port)};
	snapshot_reset(s);
	s->nconns = 0;
	s->conns_only = 0;
	s->family = family;
	int r = diag_query(nl, family, &id, s);
	s->family = 0;
	return r;
}

/* Look up the remembered connections only: cheap, see diag_query. */
static int snapshot_conns(struct mnl_socket *nl, int family, struct snapshot *s)
{
	snapshot_reset(s);
	s->conns_only = 1;
	for (s->cur = 0; s->cur < s->nconns; s->cur++) {
		s->state[s->cur] = -1;
		if (diag_query(nl, family, &s->conns[s->cur], s) < 0)
			return -1;
	}
	return 0;
}

/* The poll clock: polls due every interval on a grid of CLOCK_MONOTONIC, and
 * how late each started, which is what limits the precision of every time an
 * agent reports and what a loaded machine shows first. */
struct poll_clock {
	struct timespec due; /* when the current poll was due */
	double prev;	     /* when the previous poll started */
	double late_max;
	double window_max; /* the widest gap between two polls: what no poll saw was shorter */
	long polls, late_5ms;
};

/* When the current poll was due: a grid that lateness does not shift. */
static double poll_due(const struct poll_clock *c)
{
	return c->due.tv_sec + c->due.tv_nsec / 1e9;
}

/* since: where the first poll's window begins (the close, say) */
static void poll_clock_start(struct poll_clock *c, double since)
{
	clock_gettime(CLOCK_MONOTONIC, &c->due);
	c->prev = since;
	c->late_max = c->window_max = 0;
	c->polls = c->late_5ms = 0;
}

/* At a poll's start (now): how late it started (s). *window_ms is the time
 * since the previous poll: a change seen now happened within it. */
static double poll_begin(struct poll_clock *c, double now, double *window_ms)
{
	double late = now - poll_due(c);
	c->polls++;
	if (late > c->late_max)
		c->late_max = late;
	if (late > 0.005)
		c->late_5ms++;
	*window_ms = (now - c->prev) * 1000;
	if (now - c->prev > c->window_max)
		c->window_max = now - c->prev;
	c->prev = now;
	return late;
}

static void emit_poll_stats(const char *src, const struct poll_clock *c,
			    int interval_ms)
{
	emit_at(src, "poll_stats", mono_now(),
		"\"interval_ms\":%d,\"polls\":%ld,"
		"\"late_max_ms\":%.3f,\"late_over_5ms\":%ld,\"window_max_ms\":%.3f",
		interval_ms, c->polls, c->late_max * 1000, c->late_5ms, c->window_max * 1000);
}

/* The next poll's due time, ms after the last one due; polls already missed
 * are skipped, not caught up in a burst (a late poll is reported). */
static double poll_after(const struct poll_clock *c, double ms)
{
	double now = mono_now(), next = poll_due(c) + ms / 1000;
	while (next <= now)
		next += ms / 1000;
	return next;
}

/* Sleep until the next poll, due at t. */
static void poll_sleep(struct poll_clock *c, double t)
{
	c->due.tv_sec = (time_t)t;
	c->due.tv_nsec = (long)((t - (double)c->due.tv_sec) * 1e9);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &c->due, NULL) == EINTR)
		;
}

#endif
