/* echo-client: connects (with -w, once it gets SIGUSR1), sends one message,
 * reads the echo, then closes in the order the trial asks for:
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
	fprintf(stderr, "usage: echo-client [-c client|server] "
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

	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	if (getaddrinfo(host, port, &hints, &ai))
		fail("getaddrinfo");
	int sock = socket(ai->ai_family, SOCK_STREAM, 0);
	if (sock < 0 || connect(sock, ai->ai_addr, ai->ai_addrlen))
		fail("connect");
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
