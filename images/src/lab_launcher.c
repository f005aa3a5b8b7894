/* lab-launcher: starts the programs of a lab's trials in one side's container,
 * so that a trial costs the engine nothing: one `docker exec` of this per side
 * and lab, instead of one per program (each about 40 ms of the engine's CPU,
 * which a study of a thousand trials would spend while other trials measure).
 *
 * It speaks records both ways, each a 4-byte big-endian length and that many
 * bytes of NUL-separated fields.
 * From the harness, on stdin:
 *   start ID USER NENV ENV... ARGV...  start ARGV (PATH searched), with the
 *       container's environment and the NENV NAME=VALUE entries, as USER
 *       ("" or "root": as this program; "UID:GID": that user, no other groups),
 *       its stdin a pipe from here, its stdout and stderr one pipe to here;
 *   write ID BYTES                     write BYTES to its stdin;
 *   signal ID NUMBER                   send it that signal.
 * To the harness, on stdout:
 *   ID "o" BYTES                       what it printed;
 *   ID "e"                             its output ended (it exited, and so did
 *                                      whatever it left holding its output; a
 *                                      program it could not start says why first);
 *   "" "error" TEXT                    a record it could not read.
 * It ends when its input ends and every program's output has ended and been
 * passed on; the container's removal ends what is left.
 * A program never waits for the harness: what it prints is read at once and
 * kept here until the harness takes it (the agents' polls must start on time
 * however busy the harness is: their events carry their own times). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PROGRAMS 4096
#define MAX_RECORD (1 << 20)
#define MAX_FIELDS 256

struct program {
	char id[64];
	pid_t pid;
	int in, out; /* our ends: its stdin, its output; -1 once closed */
};

static struct program programs[MAX_PROGRAMS];
static int nprograms;

/* What is to go to the harness, in order: stdout is non-blocking, and the
 * main loop writes from here whenever it can take more. */
static char *pending;
static size_t pending_from, pending_len, pending_cap;

static void write_all(const char *buf, size_t len)
{
	if (pending_from && pending_from == pending_len)
		pending_from = pending_len = 0;
	if (pending_len + len > pending_cap) {
		size_t cap = pending_cap ? pending_cap : 65536;
		while (cap < pending_len + len)
			cap *= 2;
		char *grown = realloc(pending, cap);
		if (!grown)
			exit(1);
		pending = grown;
		pending_cap = cap;
	}
	memcpy(pending + pending_len, buf, len);
	pending_len += len;
}

/* As much of what is pending as stdout takes now. */
static void flush_some(void)
{
	while (pending_from < pending_len) {
		ssize_t n = write(1, pending + pending_from, pending_len - pending_from);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0)
			exit(1); /* the harness is gone */
		pending_from += n;
	}
	pending_from = pending_len = 0;
}

/* One record out: its fields, the last one raw bytes. */
static void emit(const char *id, const char *kind, const char *data, size_t len)
{
	size_t head = strlen(id) + 1 + strlen(kind) + (data ? 1 : 0);
	uint32_t total = head + len;
	unsigned char size[4] = {total >> 24, total >> 16, total >> 8, total};
	write_all((const char *)size, 4);
	write_all(id, strlen(id) + 1);
	write_all(kind, strlen(kind) + (data ? 1 : 0));
	if (data)
		write_all(data, len);
}

static void error(const char *fmt, const char *arg)
{
	char text[300];
	int n = snprintf(text, sizeof(text), fmt, arg);
	emit("", "error", text, n < 0 ? 0 : (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1);
}

static struct program *find(const char *id)
{
	for (int i = 0; i < nprograms; i++)
		if (strcmp(programs[i].id, id) == 0)
			return &programs[i];
	return NULL;
}

/* A program that did not start: why, as its output, and its end. */
static void not_started(const char *id, const char *why)
{
	char text[200];
	int n = snprintf(text, sizeof(text), "lab-launcher: cannot start it: %s\n", why);
	emit(id, "o", text, n < 0 ? 0 : (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1);
	emit(id, "e", NULL, 0);
}

static void start(char **f, int n)
{
	/* f: "start" ID USER NENV ENV... ARGV... */
	int nenv = n >= 4 ? atoi(f[3]) : -1;
	if (n < 2 || strlen(f[1]) >= sizeof(programs[0].id) || find(f[1])) {
		error("a start record without a fresh ID%s", "");
		return;
	}
	if (nenv < 0 || 4 + nenv >= n || nprograms == MAX_PROGRAMS) {
		not_started(f[1], "a start record without a command, or one program too many");
		return;
	}
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) {
		not_started(f[1], "no pipes");
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(out[1], 2) < 0)
			_exit(127);
		unsigned uid, gid;
		int as_is = !*f[2] || strcmp(f[2], "root") == 0;
		if (!as_is && (sscanf(f[2], "%u:%u", &uid, &gid) != 2 || setgroups(0, NULL) || setgid(gid) ||
			       setuid(uid))) {
			fprintf(stderr, "lab-launcher: cannot become %s\n", f[2]);
			_exit(127);
		}
		for (int i = 0; i < nenv; i++)
			putenv(f[4 + i]);
		f[n] = NULL;
		execvp(f[4 + nenv], f + 4 + nenv);
		fprintf(stderr, "lab-launcher: %s: cannot start it\n", f[4 + nenv]);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	if (pid < 0) {
		close(in[1]);
		close(out[0]);
		not_started(f[1], "fork failed");
		return;
	}
	struct program *p = &programs[nprograms++];
	strcpy(p->id, f[1]);
	p->pid = pid;
	p->in = in[1];
	p->out = out[0];
}

static void command(char *rec, uint32_t len)
{
	char *f[MAX_FIELDS + 1];
	int n = 0;
	for (char *s = rec; s < rec + len && n < MAX_FIELDS; s += strlen(s) + 1)
		f[n++] = s;
	struct program *p = n >= 2 ? find(f[1]) : NULL;
	if (n >= 1 && strcmp(f[0], "start") == 0) {
		start(f, n);
	} else if (n >= 2 && strcmp(f[0], "write") == 0) {
		/* the bytes are the rest of the record, NULs and all */
		char *data = f[1] + strlen(f[1]) + 1;
		if (p && p->in >= 0) {
			for (size_t left = rec + len - data; left;) {
				ssize_t w = write(p->in, data, left);
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0)
					break; /* it has exited: the harness sees its output end */
				data += w;
				left -= w;
			}
		}
	} else if (n == 3 && strcmp(f[0], "signal") == 0) {
		if (p)
			kill(p->pid, atoi(f[2]));
	} else {
		error("unknown command %s", n ? f[0] : "");
	}
}

int main(void)
{
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sfd = signalfd(-1, &chld, SFD_CLOEXEC);
	signal(SIGPIPE, SIG_IGN); /* a write to a program that has exited fails instead */
	fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
	/* two descriptors a program: a case's hundreds of repeats need more than a default 1024 */
	struct rlimit files;
	if (getrlimit(RLIMIT_NOFILE, &files) == 0) {
		files.rlim_cur = files.rlim_max;
		setrlimit(RLIMIT_NOFILE, &files);
	}
	static char rec[MAX_RECORD + 1 + MAX_FIELDS];
	static char buf[65536];
	size_t have = 0;
	int input = 1;
	struct pollfd fds[MAX_PROGRAMS + 3];
	int index[MAX_PROGRAMS + 3];
	for (;;) {
		int nfds = 0, open_outputs = 0;
		fds[nfds++] = (struct pollfd){sfd, POLLIN, 0};
		fds[nfds++] = (struct pollfd){pending_len ? 1 : -1, POLLOUT, 0};
		if (input)
			fds[nfds++] = (struct pollfd){0, POLLIN, 0};
		for (int i = 0; i < nprograms; i++)
			if (programs[i].out >= 0) {
				index[nfds] = i;
				fds[nfds++] = (struct pollfd){programs[i].out, POLLIN, 0};
				open_outputs++;
			}
		if (!input && !open_outputs && !pending_len)
			return 0;
		if (poll(fds, nfds, -1) < 0)
			continue;
		if (fds[0].revents) {
			struct signalfd_siginfo info;
			if (read(sfd, &info, sizeof(info)) > 0)
				while (waitpid(-1, NULL, WNOHANG) > 0)
					;
		}
		if (fds[1].revents)
			flush_some();
		for (int k = 2; k < nfds; k++) {
			if (!fds[k].revents)
				continue;
			if (input && fds[k].fd == 0) {
				ssize_t n = read(0, rec + have, sizeof(rec) - have - MAX_FIELDS);
				if (n < 0 && errno == EINTR)
					continue;
				if (n <= 0) {
					input = 0;
					continue;
				}
				have += n;
				while (have >= 4) {
					unsigned char *s = (unsigned char *)rec;
					uint32_t len = (uint32_t)s[0] << 24 | s[1] << 16 | s[2] << 8 | s[3];
					if (len > MAX_RECORD) {
						error("a record of %s bytes: too long", "over 1 MiB");
						return 1;
					}
					if (have < 4 + len)
						break;
					char *body = rec + 4;
					char saved = body[len];
					body[len] = 0; /* the last field ends */
					command(body, len);
					body[len] = saved;
					memmove(rec, rec + 4 + len, have - 4 - len);
					have -= 4 + len;
				}
				continue;
			}
			struct program *p = &programs[index[k]];
			ssize_t n = read(p->out, buf, sizeof(buf));
			if (n > 0) {
				emit(p->id, "o", buf, n);
			} else if (n == 0 || errno != EINTR) {
				close(p->out);
				p->out = -1;
				if (p->in >= 0) {
					close(p->in);
					p->in = -1;
				}
				emit(p->id, "e", NULL, 0);
			}
		}
	}
}
