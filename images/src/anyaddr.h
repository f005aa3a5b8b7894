/* Socket addresses. any_addr: the wildcard address of a family on a port,
 * what the server and the agent's bind probes both bind to, so they contend
 * for the same port. */
#ifndef HARNESS_ANYADDR_H
#define HARNESS_ANYADDR_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

static inline socklen_t any_addr(int family, int port, struct sockaddr_storage *a)
{
	memset(a, 0, sizeof(*a));
	if (family == AF_INET6) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)a;
		a6->sin6_family = AF_INET6;
		a6->sin6_addr = in6addr_any;
		a6->sin6_port = htons(port);
		return sizeof(*a6);
	}
	struct sockaddr_in *a4 = (struct sockaddr_in *)a;
	a4->sin_family = AF_INET;
	a4->sin_addr.s_addr = htonl(INADDR_ANY);
	a4->sin_port = htons(port);
	return sizeof(*a4);
}

/* A socket's local port, or -1 (errno set) when the kernel will not say. */
static inline int local_port(int fd)
{
	struct sockaddr_storage a;
	socklen_t len = sizeof(a);
	if (getsockname(fd, (struct sockaddr *)&a, &len))
		return -1;
	return ntohs(((struct sockaddr_in *)&a)->sin_port); /* sin6_port: same offset */
}

#endif
