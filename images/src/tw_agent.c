/* tw-agent: the harness's observer inside the server's network namespace.
 *
 * It starts the server itself (-r, -P, -n: the old server's SO_REUSEADDR and
 * SO_REUSEPORT, the connections it serves), so the two share every namespace, and it sees what
 * the book's reader sees on one host; it does every time-critical step
 * itself, on CLOCK_MONOTONIC:
 *   1. wait until the server LISTENs on the port;
 *   2. on SIGUSR1 ("close now" from the harness), or with -a PERIOD,PHASE at
 *      the first instant after it where CLOCK_MONOTONIC mod PERIOD = PHASE
 *      (-a wheel,FRACTION: that fraction of the kernel's wheel grid, phase.h):
 *      with -c server, stop the server as -k says (SIGINT as Ctrl+C does,
 *      SIGKILL, or a signal that makes it close() its connections itself,
 *      plainly or after SO_LINGER 0, or plainly while it keeps listening: a
 *      surviving process); with -c client, only mark the start
 *      (the client closes and reports its own time);
 *   3. every -i ms: look up the connections' TCP sockets through netlink
 *      inet_diag (diag.h), try bind() on fresh sockets without and with SO_REUSEADDR
 *      (and as -b asks: more options, another user, a specific address),
 *      and, once the old server is gone, every -e ms (once a second while
 *      the port cannot come free) restart the server
 *      program itself until it comes up (and stop it then, as the book's
 *      reader does; with -L it keeps listening until it has served one
 *      connection: a SYN from the old connection's port finds a listener);
 *   4. stop when all three have bound (with -L, a plain bind() is not tried:
 *      the kept server's listener holds the port; with a surviving listener, the
 *      connections gone are enough) and the connection is gone, or
 *      after -w seconds, then stay (paused) until the harness removes it.
 * It owns the server's namespaces (its container's), so they outlive the
 * server process, as on the book's single host, and last until the harness
 * has read what it needs from them (fault counters). The server's own lines
 * come out as events of src "server" ("output", and "exit" with its status
 * as a shell reports it: 128 + the signal's number after one).
 * It also reads back the sysctls in force in the namespace (-S) and the
 * namespace's TcpExt counters at the close and at the end.
 * With -x the server is someone else's: server-keeper starts, stops and
 * restarts it in a container of its own joined to this namespace; the agent
 * then only waits for its LISTEN socket, arms on SIGUSR1 (the keeper marks the
 * close) and observes the sockets and the binds. A SIGTERM then (the harness
 * is about to destroy the namespace: restart: container) ends the observation
 * with a "cut" event.
 * Everything it observes is printed as JSON lines (events.h). */
#define _GNU_SOURCE /* pipe2 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent_opts.h"
#include "anyaddr.h"
#include "diag.h"
#include "events.h"
#include "phase.h"
#include "sysctls.h"

#define SRC "agent"
#define SERVER_COMM "echo-server"
/* Between two polls: the interval asked for (-i) whenever a change can come
 * any moment, a slower one while every watched socket sits in TIME_WAIT with
 * its timer far from running out. Only a FIN's arrival (a timer restart, seen
 * at the next poll) can change it then, or, rarely, an RST or a SYN that ends
 * the TIME_WAIT early (seen up to SLOW_MS late); and a study's hundreds of
 * agents polling every 10 ms through a minute of TIME_WAIT would take the CPU
 * that the setups and the other polls need. The timer wheel only rounds a
 * TIME_WAIT up, so it cannot end before its timer runs out. */
#define SLOW_MS 100
#define FAST_BEFORE_MS 1000
/* A sample of the TIME_WAIT timer a second from a thousand agents was most of
 * what the harness and the engine's log path read, while the agents needed
 * the CPU. */
#define TIMER_SAMPLE_S 5.0
/* Restarts then, too, need not come every -e ms: the port cannot come free
 * before that end. A study's hundreds of servers restarted ten times a second
 * each, for a minute, took most of its two cores (0.15 ms of CPU a restart). */
#define QUIET_RESTART_MS 1000
/* And none in the last RESTART_CLEAR_MS before the polls around the end's
 * tick: the agent waits for each restart, and on a busy machine one took up
 * to 100 ms, in which the end came and went unpolled. The port cannot come
 * free before that tick, so a restart then would be refused anyway. */
#define RESTART_CLEAR_MS 250
/* Right after the close, until TIME_WAIT shows and the old server is gone
 * (within a millisecond or two unloaded, some ms more on a busy machine), for
 * FINE_FOR_MS at most. */
#define FINE_MS 1
#define FINE_FOR_MS 50
/* With the wheel's ticks known (-W), the only instants a TIME_WAIT can end on
 * (its timer's own expiry rounded up to the grid), polls bracket the tick: one
 * before it, after an -i interval's approach and a poll NEAR_MS before it,
 * then every FINE_MS from one after it, for an -i interval. A lab's trials end
 * on one tick, and their hundred agents polling at one instant made the last
 * ones late: each agent's bracket is BRACKET_MS wide, from BEFORE_TICK_MS plus
 * its port's share of SPREAD_MS before the tick. A poll before the tick that
 * comes so late that it sees the end has its window from the poll before it:
 * from the -i approach, that was 12 ms or more whenever it came 2-5 ms late. */
#define BRACKET_MS 5.5
#define BEFORE_TICK_MS 2
#define SPREAD_MS 4
#define NEAR_MS 4

/* How -k stops the server: echo-server close()s its connections itself on
 * SIGUSR1, and sets SO_LINGER {1, 0} first (an abortive close) on SIGUSR2. */
static const struct {
	const char *name, *how;
	int sig;
} stops[] = {
	{"sigint", "SIGINT", SIGINT},
	{"sigkill", "SIGKILL", SIGKILL},
	{"close", "close()", SIGUSR1},
	{"linger0", "SO_LINGER 0", SIGUSR2},
	{"close_listening", "close(), still listening", SIGHUP},
};
#define SURVIVES(stop) (stops[stop].sig == SIGHUP) /* the old server keeps its listener */
#define N_STOPS (int)(sizeof(stops) / sizeof(stops[0]))

/* The namespace's TcpExt counters that are not zero, as one event. The
 * kernel counts some things it does not log: a socket that could not enter
 * TIME_WAIT because tcp_max_tw_buckets were in use is TCPTimeWaitOverflow
 * (net/ipv4/tcp_minisocks.c, tcp_time_wait). /proc/net is the reader's
 * namespace, so these are this trial's alone. */
static void emit_tcpext(const char *at)
{
	FILE *f = fopen("/proc/net/netstat", "r");
	char *line[2] = {NULL, NULL}, out[16384] = "";
	size_t cap[2] = {0, 0}, used = 0;
	int got = 0;

	while (f && got < 2 && getline(&line[got], &cap[got], f) > 0)
		if (strncmp(line[got], "TcpExt:", 7) == 0)
			got++;
	if (f)
		fclose(f);
	if (got == 2) {
		char *sn, *sv, *name = strtok_r(line[0], " \n", &sn),
				 *value = strtok_r(line[1], " \n", &sv);
		/* the first token of each line is "TcpExt:" itself */
		while ((name = strtok_r(NULL, " \n", &sn)) &&
		       (value = strtok_r(NULL, " \n", &sv))) {
			char esc[200];
			long long v = atoll(value);
			if (v && used < sizeof(out) - 300)
				used += (size_t)snprintf(out + used, sizeof(out) - used,
					"%s\"%s\":%lld", used ? "," : "",
					json_escape(name, esc, sizeof(esc)), v);
		}
	}
	free(line[0]);
	free(line[1]);
	if (got == 2)
		emit_at(SRC, "tcpext", mono_now(), "\"at\":\"%s\",\"counters\":{%s}",
			at, out);
	else
		emit_at(SRC, "tcpext", mono_now(), "\"at\":\"%s\",\"counters\":null",
			at);
}

#define REUSE_ADDR 1
#define REUSE_PORT 2

/* -b: a bind() probe beyond the book's two. */
struct probe {
	int reuse; /* REUSE_ADDR | REUSE_PORT */
	uid_t uid; /* the socket's owner, which SO_REUSEPORT compares */
	char addr[16]; /* any, server (the old connection's address), loopback */
};

/* A fresh socket's bind(): does the kernel let us have the port now? The
 * socket belongs to uid: the kernel takes a socket's owner from the fsuid of
 * the process that made it (sock_init_data), which we set for that call only. */
static int try_bind(int family, int port, int reuse, uid_t uid, const struct sockaddr_storage *at)
{
	int one = 1, err = 0;
	struct sockaddr_storage a;
	socklen_t len = any_addr(family, port, &a);
	if (at) /* a specific address: its port is ours */
		memcpy(&a, at, len), ((struct sockaddr_in *)&a)->sin_port = htons(port);
	setfsuid(uid);
	int fd = socket(family, SOCK_STREAM, 0);
	err = fd < 0 ? errno : 0;
	setfsuid(0);
	if (fd < 0)
		return err;
	if (((reuse & REUSE_ADDR) && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one))) ||
	    ((reuse & REUSE_PORT) && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one))) ||
	    bind(fd, (struct sockaddr *)&a, len))
		err = errno;
	close(fd);
	return err;
}

/* Start the server, as the book's reader starts it (serve: the clients it
 * serves, 1 as in the book), its stdout on out and its stderr on err.
 * Pipes come with O_CLOEXEC: the server keeps only its own ends, as 1 and 2.
 * vfork: a study restarts thousands of servers a second, and a start cost
 * 0.22 ms of CPU with fork, 0.15 ms without copying our page tables (2,000
 * starts each); the child only makes system calls until it execs. */
static pid_t fork_server(const char *path, int family, int port, int reuse,
			 int serve, int out, int err)
{
	char portstr[16], servestr[16];
	char *argv[10]; /* the program, five options at most, the port, NULL */
	int i = 0;
	snprintf(portstr, sizeof(portstr), "%d", port);
	snprintf(servestr, sizeof(servestr), "%d", serve);
	argv[i++] = SERVER_COMM;
	if (reuse & REUSE_ADDR)
		argv[i++] = "-r";
	if (reuse & REUSE_PORT)
		argv[i++] = "-p";
	if (family == AF_INET6)
		argv[i++] = "-6";
	if (serve > 1) {
		argv[i++] = "-n";
		argv[i++] = servestr;
	}
	argv[i++] = portstr;
	argv[i] = NULL;
	/* The server keeps our CPU priority (the highest): we wait, suspended,
	 * until it has exec'd, and a restart until it has tried its bind() and
	 * exited; at the default priority a loaded machine's other work went
	 * first, and our polls stalled for up to half a second. */
	pid_t pid = vfork();
	if (pid != 0)
		return pid;
	/* a failure here is the child's, and it exits saying nothing (the start failed) */
	if (dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(126);
	execv(path, argv);
	_exit(127);
}

/* The server, for the trial; its stdout and stderr come back through *out
 * (non-blocking), read by drain_server(). */
static pid_t spawn_server(const char *path, int family, int port, int reuse,
			  int serve, int *out)
{
	int pipefd[2];

	if (pipe2(pipefd, O_CLOEXEC))
		return -1;
	pid_t pid = fork_server(path, family, port, reuse, serve, pipefd[1],
				pipefd[1]);
	close(pipefd[1]);
	if (pid < 0 || fcntl(pipefd[0], F_SETFL, O_NONBLOCK)) {
		close(pipefd[0]);
		return -1;
	}
	*out = pipefd[0];
	return pid;
}

/* The server's complete lines so far, each an "output" event of its own. */
static void drain_server(int fd, char *buf, size_t size, size_t *used)
{
	ssize_t n;
	while (fd >= 0 && (n = read(fd, buf + *used, size - 1 - *used)) > 0) {
		*used += (size_t)n;
		buf[*used] = 0;
		char *line = buf, *nl;
		while ((nl = strchr(line, '\n'))) {
			*nl = 0;
			char esc[1200];
			emit_at("server", "output", mono_now(), "\"text\":\"%s\"",
				json_escape(line, esc, sizeof(esc)));
			line = nl + 1;
		}
		*used -= (size_t)(line - buf);
		memmove(buf, line, *used + 1);
		if (*used == size - 1) /* a line longer than the buffer: as it is */
			*used = 0;
	}
}

/* Has the server ended? Reaps it and says how, once. */
static int server_ended(pid_t server)
{
	int status;
	pid_t r = waitpid(server, &status, WNOHANG);
	if (r != server)
		return 0;
	emit_at("server", "exit", mono_now(), "\"status\":%d",
		WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
	return 1;
}

/* Run the server program once, as the book's reader does by hand.
 * Returns 1 when it came up (it printed "listening"; we then stop it, or with
 * kept leave it listening, its PID there), 0 when it exited on its own;
 * *why gets its first stderr line (or what failed). */
static int restart_once(const char *path, int family, int port, int reuse,
			pid_t *kept, char *why, size_t whylen)
{
	int out[2], err[2];

	if (pipe2(out, O_CLOEXEC)) {
		snprintf(why, whylen, "pipe: %s", strerror(errno));
		return 0;
	}
	if (pipe2(err, O_CLOEXEC)) {
		snprintf(why, whylen, "pipe: %s", strerror(errno));
		close(out[0]);
		close(out[1]);
		return 0;
	}
	pid_t pid = fork_server(path, family, port, reuse, 1, out[1], err[1]);
	close(out[1]);
	close(err[1]);
	if (pid < 0) {
		snprintf(why, whylen, "fork: %s", strerror(errno));
		close(out[0]);
		close(err[0]);
		return 0;
	}

	char obuf[256] = "";
	ssize_t n = read(out[0], obuf, sizeof(obuf) - 1); /* EOF if it died */
	int up = n > 0 && strstr(obuf, "listening") != NULL;
	if (up && kept) { /* its pipes stay open: a write to a closed one would kill it */
		*kept = pid;
		return up;
	}
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
		"usage: tw-agent -p PORT [-6] [-x] [-r] [-P] [-n SERVE] [-c server|client] [-R] [-L] "
		"[-k sigint|sigkill|close|linger0|close_listening] [-i POLL_MS] [-e RESTART_MS] "
		"[-w MAX_WAIT_S] [-s SERVER] [-a PERIOD_S,PHASE_S] [-W PERIOD_NS,PHASE_NS,BOOT_ID] [-S SYSCTL]... "
		"[-b REUSEADDR,REUSEPORT,UID,any|server|loopback]\n");
	exit(2);
}

static volatile sig_atomic_t cut; /* SIGTERM: the namespace is about to go */

static void on_term(int sig)
{
	(void)sig;
	cut = 1;
}

/* Everything the agent was asked and has seen so far. */
struct agent {
	struct agent_opts o;
	int external; /* -x: the server is the keeper's, not ours */
	int old_reuse, serve, restart_reuse, keep_restarted, restart_ms, slow_ms, stop, nsysctls;
	struct probe probe; /* -b */
	int probing;
	pid_t kept; /* -L: the restarted server, still listening */
	char *sysctls[MAX_SYSCTLS];
	double period, phase; /* -a: the close's phase of CLOCK_MONOTONIC */
	struct wheel_ticks ticks; /* -W, when they are this kernel's */
	double end_tick; /* the tick the soonest TIME_WAIT's timer ends on */
	const char *close_first, *server_path;

	struct mnl_socket *nl;
	struct snapshot snap;
	pid_t server;
	int sout; /* the server's output, until it has ended */
	char sbuf[4096];
	size_t sused;

	double t0, end; /* the close, and when to give up */
	struct poll_clock pc;
	int tw_seen, tw_gone, server_gone, restart_up;
	int bind_ok[2], bind_fails[2];
	int probe_ok, probe_fails, probe_errno;
	unsigned last_expires;
	double next_sample; /* the next sample of the TIME_WAIT timer (TIMER_SAMPLE_S) */
	char last_states[sizeof(((struct snapshot *)0)->states)];

	/* Restarts, on the polls' clock (restart_due: the last one's poll); failed
	 * ones are counted, each way of failing told once (told_first, events.h:
	 * dozens say "bind() error"). */
	int attempts, restart_bind_errors, restart_other;
	double restart_due, first_restart, last_restart;
	struct told told;
};

static void parse(struct agent *a, int argc, char **argv)
{
	int opt;
	*a = (struct agent){.o = agent_opts_default(), .serve = 1, .restart_ms = 100, .sout = -1,
			    .close_first = "server", .server_path = "/usr/local/bin/" SERVER_COMM,
			    .last_states = "-"};
	while ((opt = getopt(argc, argv, AGENT_OPTS "xrPb:n:c:RLk:e:s:a:W:S:")) != -1) {
		if (agent_opt(&a->o, opt, optarg, usage))
			continue;
		switch (opt) {
		case 'x': a->external = 1; break;
		case 'r': a->old_reuse |= REUSE_ADDR; break;
		case 'P': /* the old server's and so its restart's */
			a->old_reuse |= REUSE_PORT;
			a->restart_reuse |= REUSE_PORT;
			break;
		case 'b': {
			int ra, rp;
			unsigned uid;
			struct probe *b = &a->probe;
			if (sscanf(optarg, "%d,%d,%u,%15s", &ra, &rp, &uid, b->addr) != 4 || (ra | rp) & ~1 ||
			    (strcmp(b->addr, "any") && strcmp(b->addr, "server") && strcmp(b->addr, "loopback")))
				usage();
			b->reuse = (ra ? REUSE_ADDR : 0) | (rp ? REUSE_PORT : 0);
			b->uid = uid;
			a->probing = 1;
			break;
		}
		case 'n': a->serve = (int)number_arg(optarg, 1, 64, usage); break;
		case 'c':
			if (strcmp(optarg, "server") && strcmp(optarg, "client"))
				usage();
			a->close_first = optarg;
			break;
		case 'R': a->restart_reuse |= REUSE_ADDR; break;
		case 'L': a->keep_restarted = 1; break;
		case 'k':
			for (a->stop = 0; a->stop < N_STOPS && strcmp(optarg, stops[a->stop].name); a->stop++)
				;
			if (a->stop == N_STOPS)
				usage();
			break;
		case 'S':
			if (a->nsysctls == MAX_SYSCTLS || !sysctl_name_ok(optarg))
				usage();
			a->sysctls[a->nsysctls++] = optarg;
			break;
		case 'e': a->restart_ms = (int)number_arg(optarg, 1, 60000, usage); break;
		case 's': a->server_path = optarg; break;
		case 'a':
			if (parse_phase(optarg, &a->period, &a->phase))
				usage();
			break;
		case 'W':
			if (parse_ticks(optarg, &a->ticks) < 0)
				usage();
			break;
		default: usage();
		}
	}
	if (!a->o.port || optind != argc)
		usage();
	/* a quiet poll comes no later than the next restart, and never sooner than a busy one */
	a->slow_ms = a->restart_ms < SLOW_MS ? a->restart_ms : SLOW_MS;
	if (a->slow_ms < a->o.interval_ms)
		a->slow_ms = a->o.interval_ms;
}

/* Say when we are and what the namespace is set to; open inet_diag. */
static int setup(struct agent *a)
{
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
	emit_at(SRC, "clock", mono_now(), "\"realtime\":%.9f,\"nice\":%d,\"wheel_ticks\":%s",
		real.tv_sec + real.tv_nsec / 1e9, nice_err ? 0 : -20, a->ticks.period ? "true" : "false");
	emit_sysctls(SRC, a->sysctls, a->nsysctls);
	a->nl = mnl_socket_open(NETLINK_SOCK_DIAG);
	if (!a->nl || mnl_socket_bind(a->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		emit_at(SRC, "error", mono_now(), "\"what\":\"netlink\"");
		return 1;
	}
	/* A probe as another user needs CAP_SETUID to take its fsuid (setfsuid says only what it was). */
	if (a->probing && a->probe.uid) {
		setfsuid(a->probe.uid);
		int took = (uid_t)setfsuid(0) == a->probe.uid;
		if (!took) {
			emit_at(SRC, "error", mono_now(), "\"what\":\"a bind() probe as uid %u needs CAP_SETUID\"",
				a->probe.uid);
			return 1;
		}
	}
	a->snap.port = a->o.port;
	return 0;
}

/* 1. Start the server (or, -x, wait for the keeper's); it is up when the
 * kernel shows its LISTEN socket. */
static int start_server(struct agent *a)
{
	if (!a->external)
		a->server = spawn_server(a->server_path, a->o.family, a->o.port, a->old_reuse, a->serve, &a->sout);
	if (a->server < 0) {
		emit_at(SRC, "error", mono_now(), "\"what\":\"starting the server: %s\"", strerror(errno));
		return 1;
	}
	double deadline = mono_now() + (a->external ? 120 : 30); /* someone else's may take a while */
	/* A dump walks the kernel's whole (host-sized) hash table, 2 ms here, and a
	 * lab's hundred agents dumped every 5 ms while their servers started: a
	 * lookup finds ours; every 20th try, a dump finds one bound to an address. */
	for (int tries = 1;; tries++) {
		int r = tries % 20 ? snapshot_listener(a->nl, a->o.family, &a->snap)
				   : snapshot_dump(a->nl, a->o.family, &a->snap);
		if (r >= 0 && strstr(a->snap.states, "LISTEN"))
			break;
		drain_server(a->sout, a->sbuf, sizeof(a->sbuf), &a->sused);
		if (mono_now() > deadline || (!a->external && server_ended(a->server))) {
			emit_at(SRC, "error", mono_now(), "\"what\":\"server never listened\"");
			return 1;
		}
		usleep(5000);
	}
	drain_server(a->sout, a->sbuf, sizeof(a->sbuf), &a->sused);
	emit_at(SRC, "listening", mono_now(), "\"pid\":%d", a->server);
	return 0;
}

/* 2. On the harness's "close now" (and at the asked phase): stop the server,
 * or mark t = 0 for the client's close. */
static int close_now(struct agent *a)
{
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	struct timespec wait_max = {.tv_sec = 120};
	if (sigtimedwait(&usr1, NULL, &wait_max) < 0) {
		emit_at(SRC, "error", mono_now(), "\"what\":\"no close signal\"");
		return 1;
	}
	/* The dump that finds the connections (2 ms, see start_server) comes at
	 * the trial's own phase: a lab's hundred at its close signal took both
	 * cores at once. */
	if (a->period > 0)
		align_to_phase(SRC, a->period, a->phase);
	if (snapshot_dump(a->nl, a->o.family, &a->snap) < 0 || !a->snap.nconns) {
		emit_at(SRC, "error", mono_now(), "\"what\":\"no connection on the port to watch\"");
		return 1;
	}
	emit_tcpext("close");
	a->t0 = mono_now();
	a->end = a->t0 + a->o.max_wait;
	if (strcmp(a->close_first, "server") == 0 && !a->external) {
		if (kill(a->server, stops[a->stop].sig)) {
			emit_at(SRC, "error", mono_now(), "\"what\":\"kill: %s\"", strerror(errno));
			return 1;
		}
		emit_at(SRC, "close", a->t0, "\"side\":\"server\",\"how\":\"%s\"", stops[a->stop].how);
	} else {
		emit_at(SRC, "armed", a->t0, NULL);
	}
	poll_clock_start(&a->pc, a->t0);
	signal(SIGTERM, on_term);
	return 0;
}

/* The connections' sockets: their states, TIME_WAIT's start and end.
 * Returns 1 when TIME_WAIT appeared at this poll, -1 on an error. */
static int watch_sockets(struct agent *a, double now, double window_ms)
{
	int appeared = 0;
	if (snapshot_conns(a->nl, a->o.family, &a->snap) < 0) {
		emit_at(SRC, "error", now, "\"what\":\"inet_diag\"");
		return -1;
	}
	if (strcmp(a->snap.states, a->last_states)) {
		emit_at(SRC, "sockets", now, "\"states\":[%s]", a->snap.states);
		strcpy(a->last_states, a->snap.states);
	}
	if (a->snap.time_wait && !a->tw_seen) {
		a->tw_seen = 1;
		emit_at(SRC, "tw_appear", now, "\"expires_ms\":%u,\"window_ms\":%.3f",
			a->snap.tw_expires_ms, window_ms);
		a->next_sample = now + TIMER_SAMPLE_S;
		appeared = 1;
	}
	if (a->tw_seen && !a->snap.time_wait && !a->tw_gone) {
		a->tw_gone = 1;
		emit_at(SRC, "tw_gone", now, "\"window_ms\":%.3f", window_ms);
	}
	return appeared;
}

/* The kernel's TIME_WAIT timer, sampled every TIMER_SAMPLE_S (the report draws
 * it), and each time a FIN that arrives restarts it. */
static void watch_timer(struct agent *a, double now, int appeared)
{
	const struct snapshot *s = &a->snap;
	if (s->time_wait && !appeared && s->tw_expires_ms > a->last_expires) {
		/* The timer went up: a FIN arrived in TIME_WAIT. */
		emit_at(SRC, "tw_timer_restart", now, "\"expires_ms\":%u", s->tw_expires_ms);
		a->next_sample = now + TIMER_SAMPLE_S;
	} else if (s->time_wait && !appeared && now >= a->next_sample) {
		emit_at(SRC, "tw_timer", now, "\"expires_ms\":%u", s->tw_expires_ms);
		a->next_sample = now + TIMER_SAMPLE_S;
	}
	a->last_expires = s->tw_expires_ms;
}

/* The old server's lines, and its end. */
static void watch_server(struct agent *a, double now)
{
	if (a->external)
		return;
	drain_server(a->sout, a->sbuf, sizeof(a->sbuf), &a->sused);
	if (!a->server_gone && server_ended(a->server)) {
		a->server_gone = 1;
		drain_server(a->sout, a->sbuf, sizeof(a->sbuf), &a->sused);
		close(a->sout);
		a->sout = -1;
		emit_at(SRC, "server_exit", now, NULL);
	}
}

/* A fresh socket's bind() without and with SO_REUSEADDR, until each works.
 * With -L the plain one is not tried: the kept restart's listener, not the
 * TIME_WAIT, decides it (and only until that server has served and exited). */
static void try_binds(struct agent *a, double window_ms)
{
	for (int reuse = 0; reuse < 2; reuse++) {
		if (a->bind_ok[reuse] || (!reuse && a->keep_restarted))
			continue;
		double t = mono_now();
		int err = try_bind(a->o.family, a->o.port, reuse ? REUSE_ADDR : 0, 0, NULL);
		if (!err) {
			a->bind_ok[reuse] = 1;
			emit_at(SRC, "bind_ok", t, "\"reuseaddr\":%s,\"failures\":%d,\"window_ms\":%.3f",
				reuse ? "true" : "false", a->bind_fails[reuse], window_ms);
		} else if (a->bind_fails[reuse]++ == 0) {
			char esc[200];
			emit_at(SRC, "bind_fail", t, "\"reuseaddr\":%s,\"errno\":\"%s\"",
				reuse ? "true" : "false", json_escape(strerror(err), esc, sizeof(esc)));
		}
	}
}

/* -b's bind(), every poll until it works; its errno told whenever it changes. */
static void try_probe(struct agent *a, double window_ms)
{
	if (!a->probing || a->probe_ok)
		return;
	struct sockaddr_storage at = {.ss_family = a->o.family}, *pick = &at;
	struct sockaddr_in *a4 = (struct sockaddr_in *)&at;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&at;
	if (!strcmp(a->probe.addr, "any"))
		pick = NULL;
	else if (!strcmp(a->probe.addr, "loopback") && a->o.family == AF_INET)
		a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (!strcmp(a->probe.addr, "loopback"))
		a6->sin6_addr = in6addr_loopback;
	else if (a->o.family == AF_INET) /* the old connection's own address */
		memcpy(&a4->sin_addr, a->snap.conns[0].idiag_src, 4);
	else
		memcpy(&a6->sin6_addr, a->snap.conns[0].idiag_src, 16);
	double t = mono_now();
	int err = try_bind(a->o.family, a->o.port, a->probe.reuse, a->probe.uid, pick);
	if (!err) {
		a->probe_ok = 1;
		emit_at(SRC, "probe_bind_ok", t, "\"failures\":%d,\"window_ms\":%.3f", a->probe_fails, window_ms);
		return;
	}
	a->probe_fails++;
	if (err != a->probe_errno) {
		const char *name = strerrorname_np(err); /* NULL for a number glibc cannot name */
		char num[16];
		snprintf(num, sizeof(num), "errno %d", err);
		emit_at(SRC, "probe_bind_fail", t, "\"errno\":\"%s\",\"failures\":%d", name ? name : num,
			a->probe_fails);
	}
	a->probe_errno = err;
}

/* When this agent's polls around a tick come, before and after it (see BRACKET_MS). */
static double before_tick_s(const struct agent *a)
{
	return (BEFORE_TICK_MS + a->o.port % SPREAD_MS) / 1000.0;
}

static double after_tick_s(const struct agent *a)
{
	return BRACKET_MS / 1000.0 - before_tick_s(a);
}

/* From the approach of the first of a lab's agents to their end's tick until
 * an -i interval past the last one's bracket: when the lab's agents whose
 * TIME_WAITs end on that tick all poll. Its events wait (emit_hold) and its
 * finish too, so none of the work they set off (the harness's, the fault's
 * readout) comes before those polls. */
static int around_tick(const struct agent *a, double now)
{
	double step = a->o.interval_ms / 1000.0;
	return a->end_tick && now >= a->end_tick - (BEFORE_TICK_MS + SPREAD_MS) / 1000.0 - step &&
	       now < a->end_tick + (BRACKET_MS - BEFORE_TICK_MS) / 1000.0 + step;
}

/* Every watched socket in TIME_WAIT, the old server gone: only the timer wheel
 * ends it now (and a FIN's arrival only puts that off). */
static int waiting(const struct agent *a)
{
	const struct snapshot *s = &a->snap;
	return s->time_wait && s->time_wait == s->count && (a->external || a->server_gone);
}

/* With the wheel's ticks known: the tick the soonest TIME_WAIT ends on, the
 * first after its timer's expiry. The expiry is known to a jiffy: within one
 * of a tick, that tick is taken (1 in 512), and when the end does not come on
 * it the agent polls every -i ms until the next. Once the timer has run out
 * (0), the tick found before holds: the end is late for it, or ahead. */
static void find_end_tick(struct agent *a, double now)
{
	unsigned left = a->snap.tw_soonest_ms;
	if (a->ticks.period && waiting(a) && (left || !a->end_tick))
		a->end_tick = next_tick(&a->ticks, fmax(now, now + left / 1000.0 - a->ticks.jiffy));
}

/* Nothing can change but by a FIN's arrival until the end comes near: without
 * the ticks, a second before the timer runs out. */
static int quiet(const struct agent *a)
{
	return waiting(a) && !a->ticks.period && a->snap.tw_soonest_ms > FAST_BEFORE_MS;
}

/* Once the old server is gone: start it again as the book's reader does, on
 * the first poll due -e ms or more after the last restart, until it comes up.
 * While nothing can change (quiet(), or with the ticks known, until the end's
 * tick) QUIET_RESTART_MS apart. Around that tick, none until its polls are
 * done, and then each agent on its own phase of -e ms: a lab's hundred
 * restarts at once made the last of its agents see the end 30 ms late. */
static void try_restart(struct agent *a)
{
	if (a->external || !a->server_gone || a->restart_up)
		return;
	/* Not while the server's close is under way, until its TIME_WAIT shows or
	 * its sockets are gone (FINE_FOR_MS at most): the agent waits for each
	 * restart, and one that a busy machine slowed kept the polls timing that
	 * start 20 ms apart. */
	if (!a->tw_seen && a->snap.count > a->snap.time_wait && !strcmp(a->close_first, "server") &&
	    mono_now() - a->t0 < FINE_FOR_MS / 1000.0)
		return;
	double due = poll_due(&a->pc), next = a->restart_due, step = a->restart_ms / 1000.0;
	if (a->attempts) {
		int known = a->ticks.period && a->end_tick;
		double from = a->end_tick - before_tick_s(a) - RESTART_CLEAR_MS / 1000.0;
		double to = a->end_tick + after_tick_s(a) + a->o.interval_ms / 1000.0;
		if (known && due >= from && due < to)
			return;
		int slow = quiet(a) || (known && waiting(a) && due < from);
		next += slow && a->restart_ms < QUIET_RESTART_MS ? QUIET_RESTART_MS / 1000.0 : step;
		while (known && !waiting(a) && due >= to && next < to)
			next += step;
	}
	if (due + 1e-6 < next)
		return;
	a->restart_due = due;
	char why[200], esc[1200];
	double t = mono_now();
	if (!a->attempts++)
		a->first_restart = t;
	a->last_restart = t;
	a->restart_up = restart_once(a->server_path, a->o.family, a->o.port, a->restart_reuse,
				     a->keep_restarted ? &a->kept : NULL, why, sizeof(why));
	if (a->restart_up) {
		emit_at(SRC, "restart_up", t, "\"attempt\":%d,\"failures\":%d", a->attempts, a->attempts - 1);
		return;
	}
	if (strstr(why, "bind() error"))
		a->restart_bind_errors++;
	else
		a->restart_other++;
	if (told_first(&a->told, 0, why))
		emit_at(SRC, "restart_fail", t, "\"attempt\":%d,\"stderr\":\"%s\"", a->attempts,
			json_escape(why, esc, sizeof(esc)));
}

static int finished(const struct agent *a)
{
	if (SURVIVES(a->stop)) /* its listener holds the port for good: nothing to restart */
		return !a->snap.count;
	int plain = a->bind_ok[0] || a->keep_restarted; /* -L: not tried (try_binds) */
	return plain && a->bind_ok[1] && (a->restart_up || a->external) && !a->snap.count;
}

/* 4. Say how it ended, then hold the namespaces until the harness removes us. */
static void finish(struct agent *a)
{
	emit_hold(0);
	emit_tcpext("end");
	if (a->kept > 0 && !kill(a->kept, SIGKILL)) /* the restarted server kept listening */
		waitpid(a->kept, NULL, 0);
	if (SURVIVES(a->stop) && !a->server_gone && !kill(a->server, SIGKILL)) /* so did the old one */
		waitpid(a->server, NULL, 0);
	if (a->external) /* the keeper counts the restarts */
		;
	else if (a->attempts > 1)
		emit_at(SRC, "restart_stats", mono_now(),
			"\"attempts\":%d,\"bind_errors\":%d,\"other\":%d,\"interval_ms\":%.3f",
			a->attempts, a->restart_bind_errors, a->restart_other,
			(a->last_restart - a->first_restart) * 1000 / (a->attempts - 1));
	else
		emit_at(SRC, "restart_stats", mono_now(), "\"attempts\":%d,\"bind_errors\":%d,\"other\":%d",
			a->attempts, a->restart_bind_errors, a->restart_other);
	emit_poll_stats(SRC, &a->pc, a->o.interval_ms);
	if (cut)
		emit_at(SRC, "cut", mono_now(), "\"states\":[%s]", a->snap.states);
	else if (finished(a))
		emit_at(SRC, "done", mono_now(), NULL);
	else
		emit_at(SRC, "timeout", mono_now(), "\"after_s\":%.0f", a->o.max_wait);
	hold_namespaces(a->nl);
}

/* When the next poll is due: every -i ms whenever a change can come any
 * moment, every FINE_MS right after the close, and while nothing can change, a
 * quiet interval (SLOW_MS); then, with the ticks known, closing in on the one
 * tick the end can come on, just before it and just after it. */
static double next_poll(struct agent *a)
{
	double now = mono_now(), step = a->o.interval_ms / 1000.0;
	if ((!a->tw_seen || !(a->external || a->server_gone)) && now - a->t0 < FINE_FOR_MS / 1000.0)
		return poll_after(&a->pc, FINE_MS);
	if (quiet(a))
		return poll_after(&a->pc, a->slow_ms);
	if (!waiting(a) || !a->ticks.period)
		return poll_after(&a->pc, a->o.interval_ms);
	double before = a->end_tick - before_tick_s(a), after = a->end_tick + after_tick_s(a);
	if (now >= after + step) /* the tick is an interval past and the TIME_WAIT still there */
		return poll_after(&a->pc, a->o.interval_ms);
	if (now >= before) /* from just after the tick, closely: a busy kernel ends it some ms late */
		return fmax(after, poll_after(&a->pc, FINE_MS));
	double t = poll_after(&a->pc, a->slow_ms);
	/* the -i approach and, with a longer -i, one NEAR_MS before the last poll (else 0: none) */
	double approach[] = {before - step, step > NEAR_MS / 1000.0 ? before - NEAR_MS / 1000.0 : 0};
	for (int i = 0; i < 2; i++)
		if (approach[i] > now && approach[i] < t)
			return approach[i];
	return fmin(before, t);
}

int main(int argc, char **argv)
{
	static struct agent a;

	parse(&a, argc, argv);
	if (setup(&a) || start_server(&a) || close_now(&a))
		return 1;
	/* 3. Observe, every poll. */
	for (;;) {
		double now = mono_now(), window_ms;
		double late = poll_begin(&a.pc, now, &window_ms);
		emit_hold(around_tick(&a, now));
		if (late > 0.020) /* worth a line: it blurs the times below */
			emit_at(SRC, "late_poll", now, "\"late_ms\":%.3f", late * 1000);
		int appeared = watch_sockets(&a, now, window_ms);
		if (appeared < 0)
			return 1;
		find_end_tick(&a, now);
		watch_timer(&a, now, appeared);
		watch_server(&a, now);
		try_binds(&a, window_ms);
		try_probe(&a, window_ms);
		try_restart(&a);
		if ((finished(&a) && !around_tick(&a, mono_now())) || cut || mono_now() > a.end)
			finish(&a);
		poll_sleep(&a.pc, next_poll(&a));
	}
}
