/* server-keeper: keeps a server that no one on this team wrote, in a container
 * of its own image joined to the network namespace of the server side's owner
 * (the agent), as a pod's containers join its pause container's.
 *
 * server-keeper -H is the container's first process: it only reaps the
 * processes that end up its children (a server's orphaned workers) and holds.
 * The harness starts the keeper itself in it with `docker exec`:
 *   server-keeper -p PORT [-e RESTART_MS] [-w MAX_WAIT_S] [-k SIGNAL [-t S]]
 *                 [-K WORD]... [-a PERIOD,PHASE|wheel,FRACTION] -- COMMAND [ARG]...
 *   1. start COMMAND; it is up when a LISTEN socket on PORT belongs to it (the
 *      kernel's /proc/net/tcp and tcp6 of this namespace, and /proc/PID/fd);
 *   2. on "stop" on stdin (at the -a phase of CLOCK_MONOTONIC): stop it as -k
 *      says (a signal; -t: then, after S seconds, SIGKILL to every process of
 *      the container, as `docker stop` does) or
 *      by running the -K command (a graceful-shutdown command), and wait for
 *      its end;
 *   3. start COMMAND again, every RESTART_MS on one clock, until one is up,
 *      then stop that one as in 2. Each failed start says its exit status, its
 *      last output line and what held the port as it failed: a TIME_WAIT
 *      socket, a LISTEN socket of a process that survived (its PID and name),
 *      or nothing; one line for each distinct way of failing (its digits
 *      aside: a time, a PID), and all of them counted.
 * With -N it stops the server and starts nothing (the harness is about to
 * destroy the namespace: restart: container); with -R, in the fresh container
 * of such a restart, it starts at 3 at once.
 * Its events are JSON lines on stdout (events.h); the server's own lines and
 * its end come out as events of src "server". Linked statically: it runs in
 * any image. */
#define _GNU_SOURCE /* pipe2 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "events.h"
#include "phase.h"

#define SRC "keeper"
#define SERVER_SRC "server"
#define COMMAND_WAIT_S 600
#define LOOK_MS 2	/* how often a start is checked */
#define MAX_WORDS 32
#define TCP_LISTEN 0x0A
#define TCP_TIME_WAIT 0x06

struct keeper {
	int port, restart_ms, stop_sig;
	double max_wait, kill_after, period, phase;
	char **argv, *stop_cmd[MAX_WORDS + 1];
	const char *how;
};

/* A running server: its pid and its output (stdout and stderr, one pipe). */
struct proc {
	pid_t pid;
	int out;
	char buf[4096], last[300];
	size_t used;
};

static void usage(void)
{
	fprintf(stderr, "usage: server-keeper -H\n"
			"       server-keeper [-N|-R] -p PORT [-e RESTART_MS] [-w MAX_WAIT_S] [-k SIGNAL [-t KILL_AFTER_S]] "
			"[-K WORD]... [-a PERIOD,PHASE|wheel,FRACTION] -- COMMAND [ARG]...\n");
	exit(2);
}

static int fail(const char *what)
{
	char esc[300];
	emit_at(SRC, "error", mono_now(), "\"what\":\"%s\"", json_escape(what, esc, sizeof(esc)));
	return 1;
}

static void hold(void)
{
	for (;;) /* orphans come at any time: look for them once a second when there are none */
		if (wait(NULL) < 0 && errno == ECHILD)
			sleep(1);
}

static pid_t spawn(char **argv, int *out)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC))
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		if (dup2(fds[1], 1) < 0 || dup2(fds[1], 2) < 0)
			_exit(126);
		signal(SIGPIPE, SIG_DFL);
		execvp(argv[0], argv);
		fprintf(stderr, "%s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	if (pid < 0 || fcntl(fds[0], F_SETFL, O_NONBLOCK)) {
		close(fds[0]);
		return -1;
	}
	*out = fds[0];
	return pid;
}

/* The server's complete lines so far, each an "output" event; the last kept. */
static void drain(struct proc *p)
{
	ssize_t n;
	while (p->out >= 0 && (n = read(p->out, p->buf + p->used, sizeof(p->buf) - 1 - p->used)) > 0) {
		p->used += (size_t)n;
		p->buf[p->used] = 0;
		char *line = p->buf, *nl;
		while ((nl = strchr(line, '\n'))) {
			*nl = 0;
			char esc[1200];
			if (*line)
				snprintf(p->last, sizeof(p->last), "%.299s", line);
			emit_at(SERVER_SRC, "output", mono_now(), "\"text\":\"%s\"", json_escape(line, esc, sizeof(esc)));
			line = nl + 1;
		}
		p->used -= (size_t)(line - p->buf);
		memmove(p->buf, line, p->used + 1);
		if (p->used == sizeof(p->buf) - 1)
			p->used = 0;
	}
}

/* Has it ended? Its status as a shell reports it (128 + a signal's number), or -1. */
static int ended(struct proc *p)
{
	int status;
	if (waitpid(p->pid, &status, WNOHANG) != p->pid)
		return -1;
	drain(p);
	close(p->out);
	p->out = -1;
	return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* The states of a connection on its way out (include/net/tcp_states.h),
 * which hold its port as a TIME_WAIT does: a restart meets the old one in
 * FIN_WAIT2 when the peer's FIN is late. */
static const char *closing_state(unsigned st)
{
	static const char *names[] = {[4] = "FIN_WAIT1", [5] = "FIN_WAIT2", [7] = "CLOSE",
				      [8] = "CLOSE_WAIT", [9] = "LAST_ACK", [11] = "CLOSING"};
	return st < sizeof(names) / sizeof(*names) ? names[st] : NULL;
}

/* The sockets on the port, from this namespace's /proc/net/tcp and tcp6:
 * whether one is in TIME_WAIT, the closing state of another (or NULL), and
 * the inodes of those that LISTEN. */
static int port_sockets(int port, int *time_wait, const char **closing, unsigned long *listen, int max)
{
	int n = 0;
	*time_wait = 0;
	*closing = NULL;
	for (int six = 0; six < 2; six++) {
		FILE *f = fopen(six ? "/proc/net/tcp6" : "/proc/net/tcp", "r");
		char line[512];
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			char local[64];
			unsigned st, lport;
			unsigned long inode;
			if (sscanf(line, " %*d: %63s %*s %x %*s %*s %*s %*s %*s %lu", local, &st, &inode) != 3)
				continue;
			char *colon = strrchr(local, ':');
			if (!colon || sscanf(colon + 1, "%x", &lport) != 1 || (int)lport != port)
				continue;
			if (st == TCP_TIME_WAIT)
				*time_wait = 1;
			else if (st == TCP_LISTEN && n < max)
				listen[n++] = inode;
			else if (!*closing)
				*closing = closing_state(st);
		}
		fclose(f);
	}
	return n;
}

/* Does process pid hold the socket inode? */
static int holds(pid_t pid, unsigned long inode)
{
	char dir[64], want[64];
	snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
	snprintf(want, sizeof(want), "socket:[%lu]", inode);
	DIR *d = opendir(dir);
	struct dirent *e;
	int found = 0;
	while (d && !found && (e = readdir(d))) {
		char path[320], target[64];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		found = n > 0 && (target[n] = 0, strcmp(target, want) == 0);
	}
	if (d)
		closedir(d);
	return found;
}

/* The process (of this container) that holds the socket inode: its pid and name; 0 if none. */
static pid_t holder(unsigned long inode, char *comm, size_t len)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;
	snprintf(comm, len, "?");
	while (d && !found && (e = readdir(d))) {
		pid_t pid = (pid_t)atoi(e->d_name);
		if (pid > 0 && holds(pid, inode))
			found = pid;
	}
	if (d)
		closedir(d);
	if (found) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/comm", found);
		FILE *f = fopen(path, "r");
		if (f && fgets(comm, (int)len, f))
			comm[strcspn(comm, "\n")] = 0;
		if (f)
			fclose(f);
	}
	return found;
}

/* Is the server up: a LISTEN socket on the port that it holds? */
static int listening(int port, pid_t pid)
{
	unsigned long inodes[16];
	int tw;
	const char *closing;
	int n = port_sockets(port, &tw, &closing, inodes, 16);
	for (int i = 0; i < n; i++)
		if (holds(pid, inodes[i]))
			return 1;
	return 0;
}

/* Wait for p to end, at most s seconds (s <= 0: for good); its status or -1. */
static int wait_end(struct proc *p, double s)
{
	double until = mono_now() + s;
	int status;
	while ((status = ended(p)) < 0) {
		if (s > 0 && mono_now() > until)
			return -1;
		drain(p);
		usleep(LOOK_MS * 1000);
	}
	return status;
}

/* SIGKILL to every process of this container but its first and us: what
 * `docker stop` does once its grace period is over (a server's workers too). */
static void kill_all(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		pid_t pid = (pid_t)atoi(e->d_name);
		if (pid > 1 && pid != getpid())
			kill(pid, SIGKILL);
	}
	if (d)
		closedir(d);
}

/* Stop a server as asked; returns its status as it ended. */
static int stop(const struct keeper *k, struct proc *p)
{
	if (k->stop_cmd[0]) {
		struct proc cmd = {.out = -1};
		cmd.pid = spawn((char **)k->stop_cmd, &cmd.out);
		if (cmd.pid > 0)
			wait_end(&cmd, 0);
	} else {
		kill(p->pid, k->stop_sig);
	}
	int status = wait_end(p, k->kill_after);
	if (status < 0) { /* as `docker stop` does after its grace period */
		kill_all();
		status = wait_end(p, 0);
	}
	return status;
}

/* 3. Start again until one is up; each failed start counted, and said when it fails otherwise. */
static int restart(const struct keeper *k, double t0)
{
	int attempts = 0, held_fails = 0, other = 0;
	double step = k->restart_ms / 1000.0, due = mono_now(), first = 0, last = 0, end = t0 + k->max_wait;
	struct told told = {0};
	for (;;) {
		if (mono_now() > end) {
			emit_at(SRC, "restart_stats", mono_now(), "\"attempts\":%d,\"bind_errors\":%d,\"other\":%d",
				attempts, held_fails, other);
			emit_at(SRC, "timeout", mono_now(), "\"after_s\":%.0f", k->max_wait);
			return 1;
		}
		sleep_until(due);
		double t = mono_now();
		while (due <= t + 1e-6) /* the next start's time; one missed (a slow start) is skipped */
			due += step;
		if (!attempts++)
			first = t;
		last = t;
		struct proc p = {.out = -1};
		p.pid = spawn(k->argv, &p.out);
		if (p.pid < 0)
			return fail("fork");
		int status;
		while ((status = ended(&p)) < 0 && !listening(k->port, p.pid)) {
			drain(&p);
			if (mono_now() > end)
				break;
			usleep(LOOK_MS * 1000);
		}
		if (status < 0 && mono_now() <= end) {
			emit_at(SRC, "restart_up", t, "\"attempt\":%d,\"failures\":%d,\"pid\":%d", attempts, attempts - 1,
				p.pid);
			int gone = stop(k, &p);
			emit_at(SERVER_SRC, "exit", mono_now(), "\"status\":%d", gone);
			const char *fmt = "\"attempts\":%d,\"bind_errors\":%d,\"other\":%d,\"interval_ms\":%.3f";
			if (attempts > 1)
				emit_at(SRC, "restart_stats", mono_now(), fmt, attempts, held_fails, other,
					(last - first) * 1000 / (attempts - 1));
			else
				emit_at(SRC, "restart_stats", mono_now(), "\"attempts\":%d,\"bind_errors\":%d,\"other\":%d",
					attempts, held_fails, other);
			emit_at(SRC, "done", mono_now(), NULL);
			return 0;
		}
		if (status < 0) { /* time ran out with it neither up nor ended */
			kill(p.pid, SIGKILL);
			wait_end(&p, 0);
			continue;
		}
		/* It failed: what held the port as it did. */
		unsigned long inodes[16];
		int tw;
		const char *closing;
		int n = port_sockets(k->port, &tw, &closing, inodes, 16);
		char comm[64] = "", said[700], esc[700], cesc[200];
		pid_t pid = n ? holder(inodes[0], comm, sizeof(comm)) : 0;
		const char *held = n ? "LISTEN" : tw ? "TIME_WAIT" : closing ? closing : "";
		if (*held)
			held_fails++;
		else
			other++;
		snprintf(said, sizeof(said), "%s|%s|%s", p.last, held, comm);
		if (told_first(&told, status, said)) {
			emit_at(SRC, "restart_fail", t,
				"\"attempt\":%d,\"status\":%d,\"stderr\":\"%s\",\"held_by\":\"%s\","
				"\"holder_pid\":%d,\"holder\":\"%s\"",
				attempts, status, json_escape(p.last, esc, sizeof(esc)), held, pid,
				json_escape(comm, cesc, sizeof(cesc)));
		}
	}
}

int main(int argc, char **argv)
{
	struct keeper k = {.restart_ms = 100, .stop_sig = SIGTERM, .max_wait = 600, .how = "SIGTERM"};
	int opt, nstop = 0, no_restart = 0, restart_only = 0;
	static char how[64];

	while ((opt = getopt(argc, argv, "+HNRp:e:w:k:t:K:a:")) != -1) {
		switch (opt) {
		case 'H': hold(); break;
		case 'N': no_restart = 1; break;
		case 'R': restart_only = 1; break;
		case 'p': k.port = (int)number_arg(optarg, 1, 65535, usage); break;
		case 'e': k.restart_ms = (int)number_arg(optarg, 1, 60000, usage); break;
		case 'w': k.max_wait = seconds_arg(optarg, 1, 86400, usage); break;
		case 'k':
			k.stop_sig = (int)number_arg(optarg, 1, 64, usage);
			snprintf(how, sizeof(how), "SIG%s", sigabbrev_np(k.stop_sig) ? sigabbrev_np(k.stop_sig) : "?");
			k.how = how;
			break;
		case 't': k.kill_after = seconds_arg(optarg, 0.001, 3600, usage); break;
		case 'K':
			if (nstop == MAX_WORDS)
				usage();
			k.stop_cmd[nstop++] = optarg;
			k.how = "stop command";
			break;
		case 'a':
			if (parse_phase(optarg, &k.period, &k.phase))
				usage();
			break;
		default: usage();
		}
	}
	if (!k.port || optind >= argc)
		usage();
	k.argv = argv + optind;
	signal(SIGPIPE, SIG_IGN);
	emit_at(SRC, "ready", mono_now(), NULL);
	if (restart_only) {
		restart(&k, mono_now());
		for (;;)
			pause();
	}

	/* 1. Start it; up when it holds a LISTEN socket on the port. */
	struct proc p = {.out = -1};
	p.pid = spawn(k.argv, &p.out);
	if (p.pid < 0)
		return fail("starting the server: fork");
	double deadline = mono_now() + k.max_wait; /* a server may take a while to come up */
	int status;
	while (!listening(k.port, p.pid)) {
		drain(&p);
		if ((status = ended(&p)) >= 0) {
			char what[400];
			snprintf(what, sizeof(what), "the server exited at once (status %d): %s", status, p.last);
			emit_at(SERVER_SRC, "exit", mono_now(), "\"status\":%d", status);
			return fail(what);
		}
		if (mono_now() > deadline) {
			char what[400];
			snprintf(what, sizeof(what), "the server never listened on port %d within %g s: %s", k.port,
				 k.max_wait, *p.last ? p.last : "it printed nothing");
			kill(p.pid, SIGKILL);
			return fail(what);
		}
		usleep(LOOK_MS * 1000);
	}
	emit_at(SRC, "listening", mono_now(), "\"pid\":%d", p.pid);

	/* 2. Stop it when the harness says. */
	struct pollfd in = {.fd = 0, .events = POLLIN};
	while (poll(&in, 1, 5) == 0) { /* its lines as they come, while we wait */
		drain(&p);
		if ((status = ended(&p)) >= 0) {
			emit_at(SERVER_SRC, "exit", mono_now(), "\"status\":%d", status);
			return fail("the server ended before the close");
		}
	}
	if (await_command("stop", COMMAND_WAIT_S))
		return fail("no stop command");
	if (k.period > 0)
		align_to_phase(SRC, k.period, k.phase);
	double t0 = mono_now();
	emit_at(SRC, "close", t0, "\"side\":\"server\",\"how\":\"%s\"", k.how);
	status = stop(&k, &p);
	emit_at(SERVER_SRC, "exit", mono_now(), "\"status\":%d", status);

	/* 3. Start it again until it comes up. */
	int r = no_restart ? 0 : restart(&k, t0);
	for (;;) /* the harness removes the container */
		pause();
	return r;
}
