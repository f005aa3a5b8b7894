/* echo-client: the book's client by hand, or the harness's.
 *
 * echo-client HOST PORT is for a person at a terminal. Each line typed is
 * sent and its echo printed; Q (or the end of input) closes: the client
 * closes first. When the server closes first, the client says so and closes
 * at once, not at the next line as the book's client does: only then does
 * the server's socket go on to TIME_WAIT (an orphan left in FIN_WAIT_2 would
 * just expire). Errors print like the server's ("connect() error").
 *
 * echo-client [-c ...] [-m ...] [-w] [-n N] [-b PORT] [-S SYSCTL]... HOST
 * PORT MESSAGE is the harness's. It first reads back the sysctls named with
 * -S from its network namespace (sysctls.h). It opens -n connections (with
 * -w, once the harness says "connect" on its stdin; with -b, the one
 * connection from that local port, bound before connect() as a client with a
 * fixed port does; with -R, SO_REUSEADDR set before), sends the message on each, reads the echoes (-r any: any
 * reply, a server's own protocol's; -r none: nothing, it only keeps the
 * connection open), then closes
 * in the order the trial asks for:
 *   -c client  wait for "close" on stdin (the harness's "close now"), then
 *              close every connection first;
 *   -c server  close each connection when it reads the server's FIN
 *              (read() == 0), or its RST (read() fails).
 * -m close     close(): the descriptor goes and the kernel keeps an orphan;
 * -m shutdown  shutdown(SHUT_WR) with the descriptor kept open until the
 *              kernel reports the socket CLOSED (the retry limits differ);
 * -m abort     SO_LINGER {on, 0} first, so close() sends a RST, not a FIN
 *              (with -c server, 250 ms after the server's FIN: once its
 *              kernel has acknowledged it, so the RST meets FIN_WAIT2);
 * -m never     (with -c server) no close at all: the server's socket waits
 *              in FIN_WAIT2 until tcp_fin_timeout ends it.
 * Then it stays until the harness removes the container it runs in. Events are
 * JSON lines on stdout (see events.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "anyaddr.h"
#include "events.h"
#include "sysctls.h"

#define SRC "client"
#define COMMAND_WAIT_S 600 /* the harness's next word comes within a trial's time */
#define MAX_CONNS 32

static void fail(const char *what)
{
	char esc[200];
	emit_at(SRC, "error", mono_now(), "\"what\":\"%s\",\"errno\":\"%s\"",
		what, json_escape(strerror(errno), esc, sizeof(esc)));
	exit(1);
}

/* A socket connected to HOST PORT, from local port bind_port unless it is
 * 0; NULL, or the call that failed. */
static const char *dial(const char *host, const char *port, int bind_port,
			int reuse, int *sock)
{
	int one = 1;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	if (getaddrinfo(host, port, &hints, &ai))
		return "getaddrinfo";
	*sock = socket(ai->ai_family, SOCK_STREAM, 0);
	struct sockaddr_storage local;
	socklen_t llen = any_addr(ai->ai_family, bind_port, &local);
	const char *failed = NULL;
	if (*sock < 0)
		failed = "socket";
	else if (reuse && setsockopt(*sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)))
		failed = "setsockopt";
	else if (bind_port && bind(*sock, (struct sockaddr *)&local, llen))
		failed = "bind";
	else if (connect(*sock, ai->ai_addr, ai->ai_addrlen))
		failed = "connect";
	freeaddrinfo(ai);
	return failed;
}

static void die(const char *what)
{
	fprintf(stderr, "%s() error\n", what);
	exit(1);
}

static int interactive(const char *host, const char *port)
{
	int sock;
	const char *failed = dial(host, port, 0, 0, &sock);
	if (failed)
		die(failed);
	/* Unbuffered stdin: fgets() then takes exactly one line from fd 0, so
	 * poll() on fd 0 still sees the lines after it. */
	if (setvbuf(stdin, NULL, _IONBF, 0) || setvbuf(stdout, NULL, _IOLBF, 0))
		die("setvbuf");
	printf("connected to %s port %s (Q to quit)\n", host, port);

	char line[256], buf[256];
	struct pollfd fds[] = {{.fd = 0, .events = POLLIN},
			       {.fd = sock, .events = POLLIN}};
	for (;;) {
		if (poll(fds, 2, -1) < 0)
			die("poll");
		/* The server's FIN (or a reset): read() says which. */
		if (fds[1].revents) {
			ssize_t n = read(sock, buf, sizeof(buf));
			if (n < 0)
				die("read");
			if (n == 0) {
				puts("the server closed the connection");
				break;
			}
			printf("Message from server: %.*s\n", (int)n, buf);
			continue;
		}
		if (!fgets(line, sizeof(line), stdin)) {
			if (ferror(stdin))
				die("fgets");
			break; /* end of input: close, like Q */
		}
		size_t want = strcspn(line, "\n"), got = 0;
		line[want] = '\0';
		if (!strcmp(line, "Q") || !strcmp(line, "q"))
			break;
		if (want == 0)
			continue;
		if (write(sock, line, want) != (ssize_t)want)
			die("write");
		/* The echo may come in pieces; print it once it is whole. */
		while (got < want) {
			ssize_t n = read(sock, buf + got, want - got);
			if (n < 0)
				die("read");
			if (n == 0) {
				puts("the server closed the connection");
				goto done;
			}
			got += n;
		}
		printf("Message from server: %.*s\n", (int)got, buf);
	}
done:
	if (close(sock))
		die("close");
	return 0;
}

static void hold(void)
{
	for (;;)
		pause();
}

/* Keep each shut-down descriptor until the kernel is done with its
 * connection: that is what makes shutdown() differ from an orphaned close(). */
static void wait_closed(const int *socks, int n)
{
	int left = n, done[MAX_CONNS] = {0};
	while (left > 0) {
		for (int i = 0; i < n; i++) {
			struct tcp_info ti;
			socklen_t len = sizeof(ti);
			char c;
			if (done[i])
				continue;
			(void)!recv(socks[i], &c, 1, MSG_DONTWAIT);
			if (getsockopt(socks[i], IPPROTO_TCP, TCP_INFO, &ti, &len))
				fail("getsockopt");
			if (ti.tcpi_state != TCP_CLOSE)
				continue;
			int err = 0;
			len = sizeof(err);
			if (getsockopt(socks[i], SOL_SOCKET, SO_ERROR, &err, &len))
				fail("getsockopt");
			emit_at(SRC, "socket_closed", mono_now(),
				"\"conn\":%d,\"so_error\":%d", i, err);
			if (close(socks[i]))
				fail("close");
			done[i] = 1;
			left--;
		}
		usleep(10000);
	}
}

/* Close (or shut down) these connections now, as one close. */
static void close_now(const int *socks, int n, const char *mode)
{
	int use_shutdown = !strcmp(mode, "shutdown");
	struct linger abort = {.l_onoff = 1, .l_linger = 0};
	double t = mono_now();
	for (int i = 0; i < n; i++) {
		if (!strcmp(mode, "abort") && setsockopt(socks[i], SOL_SOCKET, SO_LINGER, &abort, sizeof(abort)))
			fail("setsockopt");
		if (use_shutdown ? shutdown(socks[i], SHUT_WR) : close(socks[i]))
			fail(use_shutdown ? "shutdown" : "close");
	}
	emit_at(SRC, "close", t, "\"side\":\"client\",\"how\":\"%s\",\"connections\":%d", mode, n);
}

/* The server closed first: close each connection as its FIN (or RST)
 * arrives (-m never: keep it open, so the server's socket waits in
 * FIN_WAIT2), then, after shutdown(), hold them until the kernel is done. */
static void close_second(const int *socks, int n, const char *mode)
{
	int use_shutdown = !strcmp(mode, "shutdown");
	struct pollfd fds[MAX_CONNS];
	int open = n, shut[MAX_CONNS], nshut = 0;
	char buf[256];
	for (int i = 0; i < n; i++)
		fds[i] = (struct pollfd){.fd = socks[i], .events = POLLIN};
	while (open > 0) {
		if (poll(fds, n, -1) < 0)
			fail("poll");
		for (int i = 0; i < n; i++) {
			if (fds[i].fd < 0 || !fds[i].revents)
				continue;
			ssize_t got = read(fds[i].fd, buf, sizeof(buf));
			if (got > 0)
				continue;
			char esc[200];
			emit_at(SRC, "eof", mono_now(), "\"conn\":%d,\"read\":%zd,\"errno\":\"%s\"",
				i, got, got < 0 ? json_escape(strerror(errno), esc, sizeof(esc)) : "");
			if (got < 0) { /* reset: the kernel has closed it already */
				if (close(fds[i].fd))
					fail("close");
			} else if (strcmp(mode, "never")) {
				/* an abort waits out the delayed ACK of the server's FIN (at most
				 * 200 ms), so its RST meets the server's FIN_WAIT2, not FIN_WAIT1 */
				if (!strcmp(mode, "abort"))
					usleep(250000);
				close_now(&fds[i].fd, 1, mode);
				if (use_shutdown)
					shut[nshut++] = fds[i].fd;
			}
			fds[i].fd = -1;
			open--;
		}
	}
	wait_closed(shut, nshut);
}

static void usage(void)
{
	fprintf(stderr, "usage: echo-client HOST PORT (interactive)\n"
			"       echo-client [-c client|server] [-m close|shutdown|abort|never] [-w] "
			"[-n CONNECTIONS] [-b LOCAL_PORT] [-R] [-r echo|any|none] [-S SYSCTL]... [--] HOST PORT MESSAGE\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *close_first = "server", *mode = "close", *reply = "echo";
	int opt, wait_to_connect = 0, conns = 1, bind_port = 0, reuse = 0, nsysctls = 0;
	char *sysctls[MAX_SYSCTLS];

	while ((opt = getopt(argc, argv, "c:m:wn:b:Rr:S:")) != -1) {
		if (opt == 'c' && (!strcmp(optarg, "client") || !strcmp(optarg, "server")))
			close_first = optarg;
		else if (opt == 'm' && (!strcmp(optarg, "close") || !strcmp(optarg, "shutdown") ||
					!strcmp(optarg, "abort") || !strcmp(optarg, "never")))
			mode = optarg;
		else if (opt == 'w')
			wait_to_connect = 1;
		else if (opt == 'n')
			conns = number_arg(optarg, 1, MAX_CONNS, usage);
		else if (opt == 'b')
			bind_port = number_arg(optarg, 1, 65535, usage);
		else if (opt == 'R')
			reuse = 1;
		else if (opt == 'r' && (!strcmp(optarg, "echo") || !strcmp(optarg, "any") || !strcmp(optarg, "none")))
			reply = optarg;
		else if (opt == 'S' && nsysctls < MAX_SYSCTLS && sysctl_name_ok(optarg))
			sysctls[nsysctls++] = optarg;
		else
			usage();
	}
	if (optind == 1 && argc == 3) /* no options: by hand */
		return interactive(argv[1], argv[2]);
	if (optind != argc - 3 || (bind_port && conns > 1) ||
	    (!strcmp(mode, "never") && !strcmp(close_first, "client")))
		usage();
	const char *host = argv[optind], *port = argv[optind + 1],
		   *msg = argv[optind + 2];
	emit_sysctls(SRC, sysctls, nsysctls);

	if (wait_to_connect) {
		emit_at(SRC, "ready", mono_now(), NULL);
		if (await_command("connect", COMMAND_WAIT_S))
			fail("no connect command");
	}

	int socks[MAX_CONNS];
	for (int i = 0; i < conns; i++) {
		const char *failed = dial(host, port, bind_port, reuse, &socks[i]);
		if (failed)
			fail(failed);
		int lport = local_port(socks[i]);
		if (lport < 0)
			fail("getsockname");
		emit_at(SRC, "connected", mono_now(), "\"conn\":%d,\"lport\":%d", i, lport);
	}

	size_t want = strlen(msg);
	char buf[4096];
	for (int i = 0; i < conns; i++) {
		if (want && write(socks[i], msg, want) != (ssize_t)want)
			fail("write");
		if (!strcmp(reply, "echo")) {
			for (size_t have = 0; have < want;) {
				ssize_t n = read(socks[i], buf, sizeof(buf));
				if (n <= 0)
					fail("read echo");
				have += (size_t)n;
			}
		} else if (!strcmp(reply, "any")) {
			/* a reply of its own length: the first bytes, then what follows
			 * within 200 ms, so none is left unread at the close */
			struct pollfd p = {.fd = socks[i], .events = POLLIN};
			ssize_t n = read(socks[i], buf, sizeof(buf));
			if (n <= 0)
				fail("read reply");
			while (poll(&p, 1, 200) == 1 && (n = read(socks[i], buf, sizeof(buf))) > 0)
				;
		}
	}
	emit_at(SRC, "echoed", mono_now(), "\"bytes\":%zu,\"connections\":%d", want, conns);

	if (strcmp(close_first, "client") == 0) {
		if (await_command("close", COMMAND_WAIT_S))
			fail("no close command");
		close_now(socks, conns, mode);
		if (!strcmp(mode, "shutdown"))
			wait_closed(socks, conns);
	} else {
		close_second(socks, conns, mode);
	}
	hold();
}
