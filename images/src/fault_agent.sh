#!/bin/sh
# fault-agent: holds a fault for the harness inside the namespace it joined.
# The fault comes as two shell scripts in the environment:
#   on SIGUSR1, run $FAULT_INSTALL, then report "installed" (or an error);
#   on SIGTERM, run $FAULT_READOUT, which prints the kernel's counters, report
#   "counted" (or an error) and exit.
# Signals, because a signal is one cheap call to the engine where `docker exec`
# starts a process through it; the reports come out with the container's output.
report() { printf '{"src":"fault","ev":"%s"%s}\n' "$1" "${2:-}"; }
# The reason, kept to what a JSON string can hold as is.
failed() { report error ",\"what\":\"$1: $(printf %s "$2" | tr '\n\t' '  ' | tr -d '\000-\037"\\' | cut -c1-300)\""; }
install() {
	if out=$(sh -c "$FAULT_INSTALL" 2>&1); then report installed; else failed install "$out"; fi
}
readout() {
	if sh -c "$FAULT_READOUT" 2>/tmp/readout.err; then report counted
	else failed readout "$(cat /tmp/readout.err)"; fi
	exit 0
}
trap install USR1
trap readout TERM
report ready
while :; do
	sleep 3600 &
	wait $!
	kill $! 2>/dev/null
done
