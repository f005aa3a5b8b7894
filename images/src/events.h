/* JSON-lines events on stdout, stamped with CLOCK_MONOTONIC: every container
 * on one host shares that clock, so the harness can line up events from the
 * server namespace, the client and the capture on a single time axis. */
#ifndef HARNESS_EVENTS_H
#define HARNESS_EVENTS_H

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static inline double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* emit_at("agent", "bind_ok", t, "\"reuseaddr\":%s", "true") prints
 * {"src":"agent","ev":"bind_ok","mono":t,"reuseaddr":true} */
static inline void emit_at(const char *src, const char *ev, double mono,
			   const char *fmt, ...)
{
	printf("{\"src\":\"%s\",\"ev\":\"%s\",\"mono\":%.9f", src, ev, mono);
	if (fmt && *fmt) {
		va_list ap;
		va_start(ap, fmt);
		putchar(',');
		vprintf(fmt, ap);
		va_end(ap);
	}
	puts("}");
	fflush(stdout);
}

#endif
