#!/usr/bin/env bash
# Runs the integration suite in CHUNKS runs of the test binary (each a guest
# boot where run.sh needs the lab guest): a guest kernel that dies under
# emulation has lab.sh rerun its command from the start, and this way that is
# one chunk, not the whole suite. The tests are those of integration/*_test.go
# not matching SKIP, dealt round-robin; every chunk runs, and the exit code
# says whether all passed.
#   integration/suite.sh TEST_BINARY CHUNKS SKIP [test flags...]
set -euo pipefail
here=$(dirname "$0")
bin=$1 chunks=$2 skip=$3
shift 3
mapfile -t tests < <(grep -ho '^func Test[A-Za-z0-9_]*' "$here"/*_test.go | cut -c6- | grep -v '^TestMain$' | grep -Ev "^($skip)\$")
rc=0
for ((c = 0; c < chunks; c++)); do
	group=()
	for ((i = c; i < ${#tests[@]}; i += chunks)); do group+=("${tests[i]}"); done
	[ ${#group[@]} -gt 0 ] || continue
	echo "suite: chunk $((c + 1)) of $chunks: ${group[*]}" >&2
	"$here/run.sh" "$bin" -test.run "^($(IFS='|'; echo "${group[*]}"))\$" "$@" || rc=1
done
exit $rc
