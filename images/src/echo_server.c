/* echo-server: the textbook's restart subject, written for this harness.
 *
 * Serves one client: echoes what it reads until the peer closes, then exits.
 * With -r it sets SO_REUSEADDR on the listening socket before bind(). A failed
 * bind prints "bind() error" on stderr and exits 1, exactly what the book's
 * reader sees on a restart during TIME_WAIT. SIGINT keeps its default action,
 * so killing it behaves like Ctrl+C: the kernel closes the sockets and the
 * server side sends the first FIN. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "anyaddr.h"

static void die(const char *what)
{
	fprintf(stderr, "%s\n", what);
	exit(1);
}

int main(int argc, char **argv)
{
	int reuse = 0, family = AF_INET, opt;

	while ((opt = getopt(argc, argv, "r6")) != -1) {
		if (opt == 'r')
			reuse = 1;
		else if (opt == '6')
			family = AF_INET6;
		else
			die("usage: echo-server [-r] [-6] PORT");
	}
	if (optind != argc - 1)
		die("usage: echo-server [-r] [-6] PORT");
	char *end;
	long port = strtol(argv[optind], &end, 10);
	if (!*argv[optind] || *end || port < 1 || port > 65535)
		die("usage: echo-server [-r] [-6] PORT");

	int lsock = socket(family, SOCK_STREAM, 0);
	if (lsock < 0)
		die("socket() error");
	if (reuse &&
	    setsockopt(lsock, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse)))
		die("setsockopt() error");

	struct sockaddr_storage addr;
	socklen_t len = any_addr(family, (int)port, &addr);
	if (bind(lsock, (struct sockaddr *)&addr, len))
		die("bind() error");
	if (listen(lsock, 5))
		die("listen() error");
	printf("listening on port %ld%s\n", port, reuse ? " (SO_REUSEADDR)" : "");
	fflush(stdout);

	int csock = accept(lsock, NULL, NULL);
	if (csock < 0)
		die("accept() error");
	char buf[256];
	ssize_t n;
	while ((n = read(csock, buf, sizeof(buf))) > 0) {
		if (write(csock, buf, n) != n)
			die("write() error");
		fwrite(buf, 1, n, stdout);
		putchar('\n');
		fflush(stdout);
	}
	close(csock);
	close(lsock);
	return 0;
}
