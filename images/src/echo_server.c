/* echo-server: the textbook's restart subject, written for this harness.
 *
 * Serves -n clients (1 by default), all at once: echoes what each sends until
 * it closes, and exits when all of them have been served. The book's server
 * serves its clients one after another; serving them together lets every
 * connection close at the same instant. With -r it sets SO_REUSEADDR on the
 * listening socket before bind(), with -p SO_REUSEPORT. A failed bind prints "bind() error" on
 * stderr and exits 1, exactly what the book's reader sees on a restart during
 * TIME_WAIT. How it stops early:
 *   SIGINT, SIGKILL  the default actions: the kernel closes the sockets as
 *                    the process ends, as Ctrl+C does;
 *   SIGUSR1          it close()s every connection itself, then exits;
 *   SIGUSR2          it sets SO_LINGER {on, 0 s} on every connection first,
 *                    so close() aborts it: the kernel sends a RST, not a FIN
 *                    (net/ipv4/tcp.c, __tcp_close: "Check zero linger
 *                    _after_ checking for unread data");
 *   SIGHUP           it close()s every connection itself and keeps listening,
 *                    a surviving process, until it is killed.
 * In each case the server's side sends the first FIN (or the RST). */
#define _GNU_SOURCE /* ppoll */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "anyaddr.h"
#include "events.h" /* number_arg */

#define MAX_CLIENTS 64

static volatile sig_atomic_t stop_sig;

static void on_stop(int sig)
{
	stop_sig = sig;
}

static void die(const char *what)
{
	fprintf(stderr, "%s\n", what);
	exit(1);
}

static void usage(void)
{
	die("usage: echo-server [-r] [-p] [-6] [-n CLIENTS] PORT");
}

/* Close every connection, abortively with SO_LINGER 0 on SIGUSR2. */
static void close_all(struct pollfd *fds, int nfds, int abort)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	for (int i = 1; i < nfds; i++) {
		if (fds[i].fd < 0)
			continue;
		if (abort && setsockopt(fds[i].fd, SOL_SOCKET, SO_LINGER, &lg,
					sizeof(lg)))
			die("setsockopt() error");
		if (close(fds[i].fd))
			die("close() error");
	}
}

int main(int argc, char **argv)
{
	int reuse = 0, reuseport = 0, family = AF_INET, opt;
	long clients = 1;

	while ((opt = getopt(argc, argv, "rp6n:")) != -1) {
		if (opt == 'r')
			reuse = 1;
		else if (opt == 'p')
			reuseport = 1;
		else if (opt == '6')
			family = AF_INET6;
		else if (opt == 'n')
			clients = number_arg(optarg, 1, MAX_CLIENTS, usage);
		else
			usage();
	}
	if (optind != argc - 1)
		usage();
	long port = number_arg(argv[optind], 1, 65535, usage);

	/* SIGUSR1, SIGUSR2 and SIGHUP are taken only inside ppoll(): a stop that
	 * comes between two polls waits for the next one instead of being missed. */
	static const int stop_sigs[] = {SIGUSR1, SIGUSR2, SIGHUP};
	sigset_t stops, during_poll;
	sigemptyset(&stops);
	for (size_t i = 0; i < sizeof(stop_sigs) / sizeof(*stop_sigs); i++)
		sigaddset(&stops, stop_sigs[i]);
	struct sigaction sa = {.sa_handler = on_stop};
	if (sigprocmask(SIG_BLOCK, &stops, &during_poll))
		die("sigaction() error");
	for (size_t i = 0; i < sizeof(stop_sigs) / sizeof(*stop_sigs); i++)
		if (sigaction(stop_sigs[i], &sa, NULL) || sigdelset(&during_poll, stop_sigs[i]))
			die("sigaction() error");

	int lsock = socket(family, SOCK_STREAM, 0);
	if (lsock < 0)
		die("socket() error");
	if ((reuse &&
	     setsockopt(lsock, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse))) ||
	    (reuseport && setsockopt(lsock, SOL_SOCKET, SO_REUSEPORT, &reuseport,
				     sizeof(reuseport))))
		die("setsockopt() error");

	struct sockaddr_storage addr;
	socklen_t len = any_addr(family, (int)port, &addr);
	if (bind(lsock, (struct sockaddr *)&addr, len))
		die("bind() error");
	if (listen(lsock, MAX_CLIENTS))
		die("listen() error");
	printf("listening on port %ld%s%s\n", port, reuse ? " (SO_REUSEADDR)" : "",
	       reuseport ? " (SO_REUSEPORT)" : "");
	fflush(stdout);

	/* fds[0] is the listener until every client has come, then -1. */
	struct pollfd fds[1 + MAX_CLIENTS] = {{.fd = lsock, .events = POLLIN}};
	int nfds = 1, accepted = 0, open = 0;
	char buf[256];
	while (accepted < clients || open > 0) {
		if (ppoll(fds, nfds, NULL, &during_poll) < 0) {
			if (errno != EINTR)
				die("poll() error");
			if (stop_sig) {
				printf("closing %d connection(s)%s\n", open,
				       stop_sig == SIGUSR2 ? " with SO_LINGER 0" :
				       stop_sig == SIGHUP ? ", still listening" : "");
				fflush(stdout);
				close_all(fds, nfds, stop_sig == SIGUSR2);
				while (stop_sig == SIGHUP) /* the listener stays open */
					pause();
				break;
			}
			continue;
		}
		if (fds[0].revents & POLLIN) {
			int c = accept(lsock, NULL, NULL);
			if (c < 0)
				die("accept() error");
			fds[nfds++] = (struct pollfd){.fd = c, .events = POLLIN};
			open++;
			if (++accepted == clients)
				fds[0].fd = -1; /* every client came: poll ignores it */
		}
		for (int i = 1; i < nfds; i++) {
			if (fds[i].fd < 0 || !fds[i].revents)
				continue;
			ssize_t n = read(fds[i].fd, buf, sizeof(buf));
			if (n > 0) {
				if (write(fds[i].fd, buf, n) != n)
					die("write() error");
				fwrite(buf, 1, n, stdout);
				putchar('\n');
				fflush(stdout);
				continue;
			}
			/* the client closed (0), or reset the connection */
			if (close(fds[i].fd))
				die("close() error");
			fds[i].fd = -1;
			open--;
		}
	}
	if (close(lsock))
		die("close() error");
	return 0;
}
