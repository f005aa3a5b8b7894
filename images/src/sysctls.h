/* The sysctls in force in this process's network namespace, read back from
 * /proc/sys (which shows the reader's namespace), as one event: what a trial
 * records is what the kernel had, not what the experiment file asked for. */
#ifndef HARNESS_SYSCTLS_H
#define HARNESS_SYSCTLS_H

#include <stdio.h>
#include <string.h>

#include "events.h"

#define MAX_SYSCTLS 32

/* A dotted sysctl name we may turn into a path under /proc/sys: letters,
 * digits, '_', '-' and single dots between them (no "..", no '/'). */
static inline int sysctl_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > 200 || name[0] == '.' || name[n - 1] == '.' ||
	    strstr(name, ".."))
		return 0;
	return strspn(name, "abcdefghijklmnopqrstuvwxyz"
			    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == n;
}

/* {"src":SRC,"ev":"sysctls","values":{"net.ipv4.tcp_rfc1337":"1",...}};
 * a value that cannot be read is null. */
static inline void emit_sysctls(const char *src, char *const names[], int n)
{
	/* room for every entry at its longest: it is never cut */
	char out[MAX_SYSCTLS * 1850] = "";
	size_t used = 0;

	for (int i = 0; i < n && i < MAX_SYSCTLS; i++) {
		char path[256], value[200], ename[420], evalue[1400];
		snprintf(path, sizeof(path), "/proc/sys/%s", names[i]);
		for (char *c = path + strlen("/proc/sys/"); *c; c++)
			if (*c == '.')
				*c = '/';
		FILE *f = fopen(path, "r");
		int ok = f && fgets(value, sizeof(value), f);
		if (f)
			fclose(f);
		json_escape(names[i], ename, sizeof(ename));
		if (ok) {
			value[strcspn(value, "\n")] = 0;
			used += (size_t)snprintf(out + used, sizeof(out) - used,
				"%s\"%s\":\"%s\"", i ? "," : "", ename,
				json_escape(value, evalue, sizeof(evalue)));
		} else {
			used += (size_t)snprintf(out + used, sizeof(out) - used,
				"%s\"%s\":null", i ? "," : "", ename);
		}
	}
	emit_at(src, "sysctls", mono_now(), "\"values\":{%s}", out);
}

#endif
