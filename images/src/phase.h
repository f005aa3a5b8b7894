/* Closing on a phase of CLOCK_MONOTONIC (-a PERIOD,PHASE), for the agents
 * that make the close. The kernel rounds a TIME_WAIT timer up to its timer
 * wheel's grid, which is fixed on this clock: closes at one phase of a
 * multiple of that grid get the same rounding, trial after trial. */
#ifndef HARNESS_PHASE_H
#define HARNESS_PHASE_H

#include <errno.h>
#include <math.h>
#include <time.h>

#include "events.h"

static inline void sleep_until(double t)
{
	struct timespec at = {.tv_sec = (time_t)t, .tv_nsec = (long)((t - (time_t)t) * 1e9)};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
		;
}

/* Sleep to the next instant t >= now with t mod period = phase, and say so:
 * the wait asked for (under a period) and how late the wake came (a loaded
 * machine's). One clock read before the sleep: a stall there cannot push it a
 * period on. */
static inline void align_to_phase(const char *src, double period, double phase)
{
	double asked = mono_now(), t = asked - fmod(asked, period) + phase;
	if (t < asked)
		t += period;
	sleep_until(t);
	double woke = mono_now();
	emit_at(src, "aligned", woke, "\"period_s\":%.6f,\"phase_s\":%.6f,\"waited_s\":%.6f,\"late_s\":%.6f",
		period, phase, t - asked, woke - t);
}

#endif
