/* echo-client: the book's client by hand, or the harness's.
 *
 * echo-client HOST PORT is for a person at a terminal. Each line typed is
 * sent and its echo printed; Q (or the end of input) closes: the client
 * closes first. When the server closes first, the client says so and closes
 * at once, not at the next line as the book's client does: only then does
 * the server's socket go on to TIME_WAIT (an orphan left in FIN_WAIT_2 would
 * just expire). Errors print like the server's ("connect() error").
 *
 * echo-client [-c ...] [-m ...] [-w] HOST PORT MESSAGE is the harness's.
 * It connects (with -w, once it gets SIGUSR1), sends one message, reads the
 * echo, then closes in the order the trial asks for:
 *   -c client  wait for SIGUSR1 (the harness's "close now"), then close first;
 *   -c server  wait for the server's FIN (read() == 0), then close second.
 * -m close     close(): the descriptor goes and the kernel keeps an orphan;
 * -m shutdown  shutdown(SHUT_WR) with the descriptor kept open until the
 *              kernel reports the socket CLOSED (the retry limits differ).
 * Then it stays until the harness removes it: its container's end is work
 * for the engine, which would otherwise fall in the middle of the
 * measurement. Events are JSON lines on stdout (see events.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "events.h"

#define SRC "client"

static void fail(const char *what)
{
	emit_at(SRC, "error", mono_now(), "\"what\":\"%s\",\"errno\":%d", what,
		errno);
	exit(1);
}

/* A socket connected to HOST PORT; NULL, or the call that failed. */
static const char *dial(const char *host, const char *port, int *sock)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	if (getaddrinfo(host, port, &hints, &ai))
		return "getaddrinfo";
	*sock = socket(ai->ai_family, SOCK_STREAM, 0);
	const char *failed = NULL;
	if (*sock < 0)
		failed = "socket";
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
	const char *failed = dial(host, port, &sock);
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

static void finish_close(int sock, int use_shutdown)
{
	double t = mono_now();
	if (!use_shutdown) {
		close(sock);
		emit_at(SRC, "close", t, "\"side\":\"client\",\"how\":\"close\"");
		return;
	}
	if (shutdown(sock, SHUT_WR))
		fail("shutdown");
	emit_at(SRC, "close", t, "\"side\":\"client\",\"how\":\"shutdown\"");
	/* Keep the descriptor until the kernel is done with the connection:
	 * that is what makes shutdown() differ from an orphaned close(). */
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	for (;;) {
		char c;
		(void)!recv(sock, &c, 1, MSG_DONTWAIT);
		if (getsockopt(sock, IPPROTO_TCP, TCP_INFO, &ti, &len))
			fail("getsockopt");
		if (ti.tcpi_state == TCP_CLOSE)
			break;
		usleep(10000);
	}
	int err = 0;
	len = sizeof(err);
	if (getsockopt(sock, SOL_SOCKET, SO_ERROR, &err, &len))
		fail("getsockopt");
	emit_at(SRC, "socket_closed", mono_now(), "\"so_error\":%d", err);
	close(sock);
}

static void usage(void)
{
	fprintf(stderr, "usage: echo-client HOST PORT (interactive)\n"
			"       echo-client [-c client|server] "
			"[-m close|shutdown] [-w] [--] HOST PORT MESSAGE\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *close_first = "server", *mode = "close";
	int opt, wait_to_connect = 0, sig;

	while ((opt = getopt(argc, argv, "c:m:w")) != -1) {
		if (opt == 'c' && (!strcmp(optarg, "client") || !strcmp(optarg, "server")))
			close_first = optarg;
		else if (opt == 'm' && (!strcmp(optarg, "close") || !strcmp(optarg, "shutdown")))
			mode = optarg;
		else if (opt == 'w')
			wait_to_connect = 1;
		else
			usage();
	}
	if (optind == 1 && argc == 3) /* no options: by hand */
		return interactive(argv[1], argv[2]);
	if (optind != argc - 3)
		usage();
	const char *host = argv[optind], *port = argv[optind + 1],
		   *msg = argv[optind + 2];
	int use_shutdown = strcmp(mode, "shutdown") == 0;

	/* Block SIGUSR1 now so a "close now" sent early stays pending. */
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &usr1, NULL))
		fail("sigprocmask");
	if (wait_to_connect) {
		emit_at(SRC, "ready", mono_now(), NULL);
		sigwait(&usr1, &sig);
	}

	int sock;
	const char *failed = dial(host, port, &sock);
	if (failed)
		fail(failed);
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);
	if (getsockname(sock, (struct sockaddr *)&local, &llen))
		fail("getsockname");
	/* sin_port and sin6_port sit at the same offset */
	int lport = ntohs(((struct sockaddr_in *)&local)->sin_port);
	emit_at(SRC, "connected", mono_now(), "\"lport\":%d", lport);

	size_t want = strlen(msg), got = 0;
	if (write(sock, msg, want) != (ssize_t)want)
		fail("write");
	char buf[256];
	while (got < want) {
		ssize_t n = read(sock, buf, sizeof(buf));
		if (n <= 0)
			fail("read echo");
		got += n;
	}
	emit_at(SRC, "echoed", mono_now(), "\"bytes\":%zu", got);

	if (strcmp(close_first, "client") == 0) {
		sigwait(&usr1, &sig);
		finish_close(sock, use_shutdown);
		hold();
	}
	ssize_t n;
	while ((n = read(sock, buf, sizeof(buf))) > 0)
		;
	emit_at(SRC, "eof", mono_now(), "\"read\":%zd", n);
	finish_close(sock, use_shutdown);
	hold();
}
