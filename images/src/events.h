/* JSON-lines events on stdout, stamped with CLOCK_MONOTONIC: every container
 * on one host shares that clock, so the harness can line up events from the
 * server namespace, the client and the capture on a single time axis. */
#ifndef HARNESS_EVENTS_H
#define HARNESS_EVENTS_H

#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* While set, events wait in stdout's buffer; their stamps say when they
 * happened. A study's hundred agents of a lab poll around one tick of the
 * timer wheel, and the harness and the engine's log path that each line
 * wakes took the CPU that the last of those polls needed. */
static int emit_held;

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
	if (!emit_held)
		fflush(stdout);
}

/* Hold events (1) or let them go, those held first (0). */
static inline void emit_hold(int on)
{
	emit_held = on;
	if (!on)
		fflush(stdout);
}

/* s as the inside of a JSON string, cut to fit out (always terminated):
 * quotes and backslashes escaped, control characters as \u00XX, so text
 * from another program (a server's stderr) cannot break an event line. */
static inline const char *json_escape(const char *s, char *out, size_t n)
{
	size_t used = 0;
	for (; *s && used + 7 < n; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[used++] = '\\';
			out[used++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			used += (size_t)snprintf(out + used, n - used, "\\u%04x", c);
		} else {
			out[used++] = (char)c;
		}
	}
	out[used] = 0;
	return out;
}

/* A whole number from lo to hi, or exit with usage(): a flag's value is
 * refused, not guessed at (atoi("x") is 0). */
static inline long number_arg(const char *text, long lo, long hi,
			      void (*usage)(void))
{
	char *end;
	long v = strtol(text, &end, 10);
	if (!*text || *end || v < lo || v > hi)
		usage();
	return v;
}

/* Wait up to timeout_s for the harness's next command, one line on stdin
 * (it talks to a program it started with `docker exec` through its stdin, as
 * a signal cannot reach it): 0 when the line is `word`, -1 when time ran out,
 * -2 when the input ended or another line came. A command sent early waits in
 * the pipe, as a blocked signal would. */
static inline int await_command(const char *word, int timeout_s)
{
	struct pollfd in = {.fd = 0, .events = POLLIN};
	char line[64];
	size_t used = 0;
	for (;;) {
		/* the timeout is for the line to begin; once it has, its rest
		 * may come in another write: a second for it */
		if (poll(&in, 1, used ? 1000 : timeout_s * 1000) != 1)
			return used ? -2 : -1;
		ssize_t n = read(0, line + used, 1); /* byte by byte: no more than our line */
		if (n <= 0)
			return -2;
		if (line[used] == '\n') {
			line[used] = 0;
			return strcmp(line, word) ? -2 : 0;
		}
		if (++used == sizeof(line))
			return -2;
	}
}

/* The same for a number of seconds that may have decimals. */
static inline double seconds_arg(const char *text, double lo, double hi,
				 void (*usage)(void))
{
	char *end;
	double v = strtod(text, &end);
	if (!*text || *end || !(v >= lo && v <= hi))
		usage();
	return v;
}

/* The ways a restart failed that were told already: an exit status with a
 * line, where each run of digits (a time, a PID) counts as one, so hundreds of
 * "Address already in use" are one line. Returns 1 the first time a way is
 * seen (up to 64 of them), 0 after. */
struct told {
	uint64_t seen[64];
	int n;
};

static inline int told_first(struct told *t, int status, const char *line)
{
	uint64_t h = 1469598103934665603ULL ^ (uint32_t)status; /* FNV-1a */
	for (const char *c = line; *c; c++) {
		int digit = *c >= '0' && *c <= '9';
		if (digit && c > line && c[-1] >= '0' && c[-1] <= '9')
			continue;
		h = (h ^ (unsigned char)(digit ? '#' : *c)) * 1099511628211ULL;
	}
	for (int i = 0; i < t->n; i++)
		if (t->seen[i] == h)
			return 0;
	if (t->n == (int)(sizeof(t->seen) / sizeof(t->seen[0])))
		return 0;
	t->seen[t->n++] = h;
	return 1;
}

#endif
