#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A mutation campaign over the engine: each patch of tests/mutation/ (a small,
# realistic bug) is applied alone to a copy of the tree, the plain suite is
# built and run against it, and the mutant is "killed" if a test fails (or
# the tree no longer builds), "survived" if every test passes. Prints one line
# per mutant and the score; a kill by a program that timed out says so, since
# on a loaded machine a slow program may time out without any mutant. Not part of `make test`: a run takes about an hour
# here (each mutant rebuilds and runs the suite up to its first failure).
#
#	tests/mutation.sh                     every patch
#	tests/mutation.sh tests/mutation/03-*.patch   the ones named
#
# Tests run one program at a time (ordered_tests), and a mutant stops at its
# first failing program: a kill needs one. GMEM_TEST_TIMEOUT (300 s, as for
# the suite) bounds each program, so a mutant that hangs a test is killed.
set -u
cd "$(dirname "$0")/.." || exit 2
top=$(pwd)
if [ $# -gt 0 ]; then patches=("$@"); else patches=("$top"/tests/mutation/*.patch); fi
work=$(mktemp -d /tmp/gmem-mutation.XXXXXX)
trap 'rm -rf "$work"' EXIT
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$work"
cd "$work" || exit 2
export GMEM_TEST_TIMEOUT=${GMEM_TEST_TIMEOUT:-300}
# Every program of the suite, those that drive the gmem command, KVM or
# long thread runs last: a kill usually comes sooner from the quick ones.
ordered_tests() {
	local slow='^test_(cli_|kvm_|stress|threads_|vmm)'
	ls build/tests/ | grep '^test_' | grep -Ev "$slow" | sort
	ls build/tests/ | grep -E "$slow" | sort
}
killed=0 survived=0 survivors=()
for p in "${patches[@]}"; do
	p=$(cd "$top" && realpath "$p")
	name=$(basename "$p" .patch)
	if ! patch -s -p1 --dry-run < "$p" >/dev/null; then
		echo "$name: does not apply"; continue
	fi
	patch -s -p1 < "$p"
	verdict=survived by=""
	if ! make -s -j2 O=build all >build.log 2>&1; then
		verdict=killed by="(does not build)"
	else
		for t in $(ordered_tests); do
			if ! O=build tests/run.sh "$t" >run.log 2>&1; then
				verdict=killed by="by $t"
				grep -q 'timed out' run.log && by="$by (timed out)"
				break
			fi
		done
	fi
	patch -s -R -p1 < "$p"
	if [ $verdict = killed ]; then killed=$((killed + 1)); else survived=$((survived + 1)); survivors+=("$name"); fi
	echo "$name: $verdict $by"
done
echo "score: $killed killed of $((killed + survived))"
[ ${#survivors[@]} -gt 0 ] && echo "survivors: ${survivors[*]}"
[ "$survived" -eq 0 ]
