#!/bin/sh
# fault-agent: holds a fault for the harness inside the namespace it joined.
# The fault comes as two shell scripts in the environment, and the harness's
# commands as lines on stdin (it starts this with `docker exec`):
#   "install": run $FAULT_INSTALL, then report "installed" (or an error);
#   "readout": run $FAULT_READOUT, which prints the kernel's counters, report
#   "counted" (or an error) and exit.
# The reports come out on stdout, as JSON lines, with the readout's own output.
report() { printf '{"src":"fault","ev":"%s"%s}\n' "$1" "${2:-}"; }
# The reason, kept to what a JSON string can hold as is.
failed() { report error ",\"what\":\"$1: $(printf %s "$2" | tr '\n\t' '  ' | tr -d '\000-\037"\\' | cut -c1-300)\""; }
report ready
while read -r command; do
	case $command in
	install)
		if out=$(sh -c "$FAULT_INSTALL" 2>&1); then report installed; else failed install "$out"; fi ;;
	readout)
		if sh -c "$FAULT_READOUT" 2>/tmp/readout.$$.err; then report counted
		else failed readout "$(cat /tmp/readout.$$.err)"; fi
		exit 0 ;;
	*) failed command "unknown command: $command" ;;
	esac
done
