/* tw-agent: the harness's observer inside the server's network namespace.
 *
 * It shares the network and PID namespaces of the server, so it sees what the
 * book's reader sees on one host, and it does every time-critical step itself,
 * on CLOCK_MONOTONIC:
 *   1. wait until the server LISTENs on the port;
 *   2. on SIGUSR1 ("close now" from the harness), or with -a PERIOD,PHASE at
 *      the first instant after it where CLOCK_MONOTONIC mod PERIOD = PHASE:
 *      with -c server, SIGINT the server as Ctrl+C does; with -c client, only
 *      mark the start (the client closes and reports its own time);
 *   3. every -i ms: look up the connection's TCP socket through netlink
 *      inet_diag (libmnl), try bind() on fresh sockets without and with SO_REUSEADDR,
 *      and, once the old server is gone, every -e ms restart the server
 *      program itself until it comes up;
 *   4. stop when all three have bound and the connection is gone, or after
 *      -w seconds, then stay (paused) until the harness removes it.
 * It owns the server's namespaces (its container's), so they outlive the
 * server process, as on the book's single host, and last until the harness
 * has read what it needs from them (fault counters).
 * Everything it observes is printed as JSON lines (events.h). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "anyaddr.h"
#include "events.h"

#define SRC "agent"
#define SERVER_COMM "echo-server"

static const char *const state_names[] = {
	"?",	     "ESTABLISHED", "SYN_SENT", "SYN_RECV",   "FIN_WAIT1",
	"FIN_WAIT2", "TIME_WAIT",   "CLOSE",    "CLOSE_WAIT", "LAST_ACK",
	"LISTEN",    "CLOSING",     "NEW_SYN_RECV",
};
#define N_STATES (int)(sizeof(state_names) / sizeof(state_names[0]))

/* What inet_diag told us about the sockets we watch on our port. */
struct snapshot {
	int port;
	int count, time_wait;
	unsigned tw_expires_ms; /* largest TIME_WAIT timer left */
	char states[512];	/* "TIME_WAIT","LISTEN": the signature we log */
	/* A dump fills conns with the port's connections (not listeners);
	 * lookups of those set conns_only, since the kernel answers a lookup
	 * for a connection that is gone with the listener, if there is one. */
	struct inet_diag_sockid conns[8];
	int nconns, conns_only;
};

static int diag_cb(const struct nlmsghdr *nlh, void *data)
{
	struct snapshot *s = data;
	const struct inet_diag_msg *m = mnl_nlmsg_get_payload(nlh);
	int st = m->idiag_state;

	if (ntohs(m->id.idiag_sport) != s->port ||
	    (s->conns_only && !m->id.idiag_dport))
		return MNL_CB_OK;
	if (!s->conns_only && m->id.idiag_dport && s->nconns < 8)
		s->conns[s->nconns++] = m->id;
	s->count++;
	if (st == 6) { /* TCP_TIME_WAIT */
		s->time_wait++;
		if (m->idiag_expires > s->tw_expires_ms)
			s->tw_expires_ms = m->idiag_expires;
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

/* Look up the remembered connections only: cheap, see diag_query. */
static int snapshot_conns(struct mnl_socket *nl, int family, struct snapshot *s)
{
	snapshot_reset(s);
	s->conns_only = 1;
	for (int i = 0; i < s->nconns; i++)
		if (diag_query(nl, family, &s->conns[i], s) < 0)
			return -1;
	return 0;
}

/* A fresh socket's bind(): does the kernel let us have the port now? */
static int try_bind(int family, int port, int reuse)
{
	int fd = socket(family, SOCK_STREAM, 0), err = 0;
	struct sockaddr_storage a;
	socklen_t len = any_addr(family, port, &a);

	if (fd < 0)
		return errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse)) ||
	    bind(fd, (struct sockaddr *)&a, len))
		err = errno;
	close(fd);
	return err;
}

static pid_t find_server(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;

	while (d && (e = readdir(d)) && !found) {
		char path[300], comm[64] = "";
		pid_t pid = atoi(e->d_name);
		if (pid <= 0 || pid == getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%d/comm", pid);
		FILE *f = fopen(path, "r");
		if (f && fgets(comm, sizeof(comm), f) &&
		    strncmp(comm, SERVER_COMM, strlen(SERVER_COMM)) == 0)
			found = pid;
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return found;
}

/* Run the server program once, as the book's reader does by hand.
 * Returns 1 when it came up (it printed "listening"; we then stop it), 0 when
 * it exited on its own; *why gets its first stderr line (or what failed). */
static int restart_once(const char *path, int family, int port, int reuse,
			char *why, size_t whylen)
{
	int out[2], err[2];
	char portstr[16];

	snprintf(portstr, sizeof(portstr), "%d", port);
	if (pipe(out)) {
		snprintf(why, whylen, "pipe: %s", strerror(errno));
		return 0;
	}
	if (pipe(err)) {
		snprintf(why, whylen, "pipe: %s", strerror(errno));
		close(out[0]);
		close(out[1]);
		return 0;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(why, whylen, "fork: %s", strerror(errno));
		close(out[0]);
		close(out[1]);
		close(err[0]);
		close(err[1]);
		return 0;
	}
	if (pid == 0) {
		/* the server as the book runs it; a failure here is the
		 * child's, and it exits saying nothing (the restart failed) */
		if (setpriority(PRIO_PROCESS, 0, 0) || dup2(out[1], 1) < 0 ||
		    dup2(err[1], 2) < 0)
			_exit(126);
		close(out[0]);
		close(err[0]);
		char *argv[5];
		int i = 0;
		argv[i++] = SERVER_COMM;
		if (reuse)
			argv[i++] = "-r";
		if (family == AF_INET6)
			argv[i++] = "-6";
		argv[i++] = portstr;
		argv[i] = NULL;
		execv(path, argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);

	char obuf[256] = "";
	ssize_t n = read(out[0], obuf, sizeof(obuf) - 1); /* EOF if it died */
	int up = n > 0 && strstr(obuf, "listening") != NULL;
	if (up)
		kill(pid, SIGINT);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	n = read(err[0], why, whylen - 1);
	why[n > 0 ? n : 0] = 0;
	why[strcspn(why, "\n")] = 0;
	close(out[0]);
	close(err[0]);
	return up;
}

/* Sleep to the next tick of the grid; ticks already missed are skipped, not
 * caught up in a burst (a late poll is reported, see "late_poll"). */
static void sleep_until(struct timespec *next, int ms)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	do {
		next->tv_nsec += ms * 1000000L;
		while (next->tv_nsec >= 1000000000L) {
			next->tv_nsec -= 1000000000L;
			next->tv_sec++;
		}
	} while (next->tv_sec < now.tv_sec ||
		 (next->tv_sec == now.tv_sec && next->tv_nsec <= now.tv_nsec));
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, next, NULL) ==
	       EINTR)
		;
}

/* Sleep to the next instant t >= now with t mod period = phase (seconds, on
 * CLOCK_MONOTONIC). The kernel rounds a TIME_WAIT timer up to its timer
 * wheel's grid, which is fixed on this clock: closes at one phase of a
 * multiple of that grid get the same rounding, trial after trial. */
static void sleep_to_phase(double period, double phase)
{
	double now = mono_now();
	double t = now - fmod(now, period) + phase;
	if (t < now)
		t += period;
	struct timespec at = {.tv_sec = (time_t)t,
			      .tv_nsec = (long)((t - (time_t)t) * 1e9)};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) ==
	       EINTR)
		;
}

/* Keep the namespaces (ours as PID 1) until the harness removes us. */
static void hold_namespaces(struct mnl_socket *nl)
{
	mnl_socket_close(nl);
	for (;;)
		pause();
}

static void usage(void)
{
	fprintf(stderr,
		"usage: tw-agent -p PORT [-6] [-c server|client] [-R] "
		"[-i POLL_MS] [-e RESTART_MS] [-w MAX_WAIT_S] [-s SERVER] "
		"[-a PERIOD_S,PHASE_S]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int port = 0, family = AF_INET, restart_reuse = 0, interval_ms = 10,
	    restart_ms = 100, opt;
	double max_wait = 600, period = 0, phase = 0;
	const char *close_first = "server",
		   *server_path = "/usr/local/bin/" SERVER_COMM;

	while ((opt = getopt(argc, argv, "p:6c:Ri:e:w:s:a:")) != -1) {
		switch (opt) {
		case 'p': port = number_arg(optarg, 1, 65535, usage); break;
		case '6': family = AF_INET6; break;
		case 'c':
			if (strcmp(optarg, "server") && strcmp(optarg, "client"))
				usage();
			close_first = optarg;
			break;
		case 'R': restart_reuse = 1; break;
		case 'i': interval_ms = number_arg(optarg, 1, 1000, usage); break;
		case 'e': restart_ms = number_arg(optarg, 1, 60000, usage); break;
		case 'w': max_wait = seconds_arg(optarg, 1, 86400, usage); break;
		case 's': server_path = optarg; break;
		case 'a':
			if (sscanf(optarg, "%lf,%lf", &period, &phase) != 2 ||
			    !(period >= 0.001 && period <= 3600) ||
			    !(phase >= 0 && phase < period))
				usage();
			break;
		default: usage();
		}
	}
	if (!port || optind != argc)
		usage();

	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &usr1, NULL)) {
		emit_at(SRC, "error", mono_now(), "\"what\":\"sigprocmask\"");
		return 1;
	}

	/* Polls must start on time while other trials start containers: ask for
	 * the highest CFS priority (needs CAP_SYS_NICE; without it, say so). */
	int nice_err = setpriority(PRIO_PROCESS, 0, -20) ? errno : 0;

	struct timespec real;
	clock_gettime(CLOCK_REALTIME, &real);
	/* Lets the harness put pcap (wall-clock) timestamps on this axis. */
	emit_at(SRC, "clock", mono_now(), "\"realtime\":%.9f,\"nice\":%d",
		real.tv_sec + real.tv_nsec / 1e9, nice_err ? 0 : -20);

	struct mnl_socket *nl = mnl_socket_open(NETLINK_SOCK_DIAG);
	if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		emit_at(SRC, "error", mono_now(), "\"what\":\"netlink\"");
		return 1;
	}
	struct snapshot snap = {.port = port};

	/* 1. The server is up when the kernel shows its LISTEN socket. */
	double deadline = mono_now() + 30;
	pid_t server = 0;
	while (!(server = find_server()) ||
	       snapshot_dump(nl, family, &snap) < 0 ||
	       !strstr(snap.states, "LISTEN")) {
		if (mono_now() > deadline) {
			emit_at(SRC, "error", mono_now(),
				"\"what\":\"server never listened\"");
			return 1;
		}
		usleep(5000);
	}
	emit_at(SRC, "listening", mono_now(), "\"pid\":%d", server);

	/* 2. Wait for the harness's "close now". */
	struct timespec wait_max = {.tv_sec = 120};
	if (sigtimedwait(&usr1, NULL, &wait_max) < 0) {
		emit_at(SRC, "error", mono_now(), "\"what\":\"no close signal\"");
		return 1;
	}
	if (snapshot_dump(nl, family, &snap) < 0 || !snap.nconns) {
		emit_at(SRC, "error", mono_now(),
			"\"what\":\"no connection on the port to watch\"");
		return 1;
	}
	if (period > 0) {
		double asked = mono_now();
		sleep_to_phase(period, phase);
		double woke = mono_now();
		emit_at(SRC, "aligned", woke,
			"\"period_s\":%.6f,\"phase_s\":%.6f,\"waited_s\":%.6f",
			period, phase, woke - asked);
	}
	double t0 = mono_now();
	if (strcmp(close_first, "server") == 0) {
		kill(server, SIGINT);
		emit_at(SRC, "close", t0, "\"side\":\"server\",\"how\":\"SIGINT\"");
	} else {
		emit_at(SRC, "armed", t0, NULL);
	}

	/* 3. Observe. */
	int tw_seen = 0, tw_gone = 0, server_gone = 0, restart_up = 0;
	int bind_ok[2] = {0, 0}, bind_fails[2] = {0, 0}, attempts = 0;
	unsigned last_expires = 0;
	char last_states[512] = "-";
	/* The kernel's TIME_WAIT timer, sampled once a second: the report draws
	 * it (a FIN that arrives restarts it, see tw_timer_restart). */
	double next_sample = 0;
	double next_restart = 0, end = t0 + max_wait;
	/* How late each poll starts: what limits the precision of every time
	 * below, and what a loaded machine would show first. */
	double late_max = 0, prev_poll = t0;
	long ticks = 0, late_5ms = 0;
	struct timespec tick;
	clock_gettime(CLOCK_MONOTONIC, &tick);

	for (;;) {
		double now = mono_now();
		double late = now - (tick.tv_sec + tick.tv_nsec / 1e9);
		ticks++;
		if (late > late_max)
			late_max = late;
		if (late > 0.005)
			late_5ms++;
		if (late > 0.020) /* worth a line: it blurs the times below */
			emit_at(SRC, "late_poll", now, "\"late_ms\":%.3f", late * 1000);
		if (snapshot_conns(nl, family, &snap) < 0) {
			emit_at(SRC, "error", now, "\"what\":\"inet_diag\"");
			return 1;
		}
		if (strcmp(snap.states, last_states)) {
			emit_at(SRC, "sockets", now, "\"states\":[%s]", snap.states);
			strcpy(last_states, snap.states);
		}
		/* A change seen now happened since the previous poll: window_ms
		 * bounds the error of the time we give it. */
		double window_ms = (now - prev_poll) * 1000;
		prev_poll = now;
		if (snap.time_wait && !tw_seen) {
			tw_seen = 1;
			emit_at(SRC, "tw_appear", now,
				"\"expires_ms\":%u,\"window_ms\":%.3f",
				snap.tw_expires_ms, window_ms);
			next_sample = now + 1.0;
		} else if (snap.time_wait && snap.tw_expires_ms > last_expires) {
			/* The timer went up: a FIN arrived in TIME_WAIT. */
			emit_at(SRC, "tw_timer_restart", now, "\"expires_ms\":%u",
				snap.tw_expires_ms);
			next_sample = now + 1.0;
		} else if (snap.time_wait && now >= next_sample) {
			emit_at(SRC, "tw_timer", now, "\"expires_ms\":%u",
				snap.tw_expires_ms);
			next_sample = now + 1.0;
		}
		last_expires = snap.tw_expires_ms;
		if (tw_seen && !snap.time_wait && !tw_gone) {
			tw_gone = 1;
			emit_at(SRC, "tw_gone", now, "\"window_ms\":%.3f",
				window_ms);
		}
		if (!server_gone && kill(server, 0) && errno == ESRCH) {
			server_gone = 1;
			emit_at(SRC, "server_exit", now, NULL);
		}
		for (int reuse = 0; reuse < 2; reuse++) {
			if (bind_ok[reuse])
				continue;
			double t = mono_now();
			int err = try_bind(family, port, reuse);
			if (!err) {
				bind_ok[reuse] = 1;
				emit_at(SRC, "bind_ok", t,
					"\"reuseaddr\":%s,\"failures\":%d,"
					"\"window_ms\":%.3f",
					reuse ? "true" : "false",
					bind_fails[reuse], window_ms);
			} else if (bind_fails[reuse]++ == 0) {
				char esc[200];
				emit_at(SRC, "bind_fail", t,
					"\"reuseaddr\":%s,\"errno\":\"%s\"",
					reuse ? "true" : "false",
					json_escape(strerror(err), esc, sizeof(esc)));
			}
		}
		if (server_gone && !restart_up && mono_now() >= next_restart) {
			char why[200], esc[1200];
			double t = mono_now();
			next_restart = t + restart_ms / 1000.0;
			attempts++;
			restart_up = restart_once(server_path, family, port,
						  restart_reuse, why, sizeof(why));
			if (restart_up)
				emit_at(SRC, "restart_up", t, "\"attempt\":%d",
					attempts);
			else
				emit_at(SRC, "restart_fail", t,
					"\"attempt\":%d,\"stderr\":\"%s\"",
					attempts,
					json_escape(why, esc, sizeof(esc)));
		}
		int finished = bind_ok[0] && bind_ok[1] && restart_up && !snap.count;
		if (finished || mono_now() > end) {
			emit_at(SRC, "poll_stats", mono_now(),
				"\"interval_ms\":%d,\"polls\":%ld,"
				"\"late_max_ms\":%.3f,\"late_over_5ms\":%ld",
				interval_ms, ticks, late_max * 1000, late_5ms);
			if (finished)
				emit_at(SRC, "done", mono_now(), NULL);
			else
				emit_at(SRC, "timeout", mono_now(),
					"\"after_s\":%.0f", max_wait);
			hold_namespaces(nl);
		}
		sleep_until(&tick, interval_ms);
	}
}
