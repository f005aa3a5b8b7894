/* The options both agents take (tw-agent on the server's side, client-agent
 * on the client's): the port they watch, the family, the poll interval and
 * how long to watch at most, parsed in one place into one struct. */
#ifndef HARNESS_AGENT_OPTS_H
#define HARNESS_AGENT_OPTS_H

#include <sys/socket.h>

#include "events.h"

#define AGENT_OPTS "p:6i:w:" /* the getopt letters these take */

struct agent_opts {
	int port;	  /* -p: the server's port */
	int family;	  /* -6: AF_INET6, else AF_INET */
	int interval_ms;  /* -i: between two polls while a change can come */
	double max_wait;  /* -w: seconds, from the close */
};

static inline struct agent_opts agent_opts_default(void)
{
	return (struct agent_opts){.family = AF_INET, .interval_ms = 10, .max_wait = 600};
}

/* 1 when opt is one of AGENT_OPTS (its value checked, or usage()), else 0. */
static inline int agent_opt(struct agent_opts *o, int opt, const char *arg,
			    void (*usage)(void))
{
	switch (opt) {
	case 'p': o->port = (int)number_arg(arg, 1, 65535, usage); return 1;
	case '6': o->family = AF_INET6; return 1;
	case 'i': o->interval_ms = (int)number_arg(arg, 1, 1000, usage); return 1;
	case 'w': o->max_wait = seconds_arg(arg, 1, 86400, usage); return 1;
	default: return 0;
	}
}

#endif
