/* Closing on a phase of CLOCK_MONOTONIC (-a PERIOD,PHASE, or -a wheel,FRACTION),
 * for the agents that make the close. The kernel rounds a TIME_WAIT timer up to
 * its timer wheel's grid, which is fixed on this clock: closes at one phase of
 * a multiple of that grid get the same rounding, trial after trial; closes at
 * phases drawn at random over the grid (the trials of a shared lab) sample the
 * rounding as trials started at unrelated moments do.
 * The wheel's ticks themselves (-W, from the host's /proc/timer_list, which a
 * container cannot read) say when a TIME_WAIT can end: the agent polls just
 * before and just after that tick, not every few ms for seconds. */
#ifndef HARNESS_PHASE_H
#define HARNESS_PHASE_H

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "events.h"

static inline void sleep_until(double t)
{
	struct timespec at = {.tv_sec = (time_t)t, .tv_nsec = (long)((t - (time_t)t) * 1e9)};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
		;
}

/* The grid a 60 s timer (TIME_WAIT, FIN_WAIT2) is rounded up to on this
 * kernel's timer wheel: level n holds timeouts from 63 x 8^(n-1) jiffies on,
 * 8^n jiffies apart (kernel/time/timer.c, LVL_START and LVL_GRAN), so 512
 * jiffies at HZ 100 to 300 and 4096 at HZ 1000; a jiffy is the coarse clock's
 * resolution. */
static inline double wheel_grid_s(void)
{
	struct timespec res;
	if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) || !(res.tv_sec || res.tv_nsec))
		return 5.12; /* the coarsest Linux uses */
	double jiffy = res.tv_sec + res.tv_nsec / 1e9, gran = 1;
	for (int lvl = 0; lvl < 8 && 60 / jiffy >= 63 * gran; lvl++)
		gran *= 8;
	return gran * jiffy;
}

/* -a's argument: PERIOD,PHASE in seconds, or wheel,FRACTION (the period is
 * this kernel's wheel grid, the phase that fraction of it). 0 if it is one. */
static inline int parse_phase(const char *arg, double *period, double *phase)
{
	double frac;
	if (sscanf(arg, "wheel,%lf", &frac) == 1) {
		if (!(frac >= 0 && frac < 1))
			return -1;
		*period = wheel_grid_s();
		*phase = frac * *period;
		return 0;
	}
	if (sscanf(arg, "%lf,%lf", period, phase) != 2 || !(*period >= 0.001 && *period <= 3600) ||
	    !(*phase >= 0 && *phase < *period))
		return -1;
	return 0;
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

/* The instants on CLOCK_MONOTONIC a 60 s timer can fire at: the wheel grid's,
 * on this boot's kernel (period 0: not known here). */
struct wheel_ticks {
	double period, phase, jiffy;
};

/* -W PERIOD_NS,PHASE_NS,BOOT_ID: the ticks the harness read on its host, used
 * only when this is that boot of that kernel (a container shares its clock and
 * its boot_id; a VM's engine has its own). 0 when they are ours, 1 when they
 * are another kernel's, -1 when the argument is not one. */
static inline int parse_ticks(const char *arg, struct wheel_ticks *w)
{
	char boot[64] = "", ours[64] = "";
	long long period, phase;
	struct timespec res;
	if (sscanf(arg, "%lld,%lld,%63s", &period, &phase, boot) != 3 || period <= 0 || phase < 0 ||
	    phase >= period)
		return -1;
	w->period = period / 1e9;
	w->phase = phase / 1e9;
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
	int same = f && fscanf(f, "%63s", ours) == 1 && !strcmp(boot, ours);
	if (f)
		fclose(f);
	if (!same || clock_getres(CLOCK_MONOTONIC_COARSE, &res)) {
		w->period = 0;
		return 1;
	}
	w->jiffy = res.tv_sec + res.tv_nsec / 1e9;
	return 0;
}

/* The first tick after t. */
static inline double next_tick(const struct wheel_ticks *w, double t)
{
	return w->phase + (floor((t - w->phase) / w->period) + 1) * w->period;
}

#endif
