#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The whole suite: warning-free builds with gcc and clang, the tests plain,
# under ASan+UBSan, the threaded ones under TSan, Linux's own KVM selftests
# under the KVM layer (built from Debian's linux-source at test time), the
# examples, the SPIN model of the invalidation protocol, and short runs of
# the scenario fuzzer and the API fuzzer. Last line:
# "N passed, N failed".
set -u
cd "$(dirname "$0")/.." || exit 2
pass=0 fail=0 skip=0
run() {	# run NAME COMMAND...: a step whose output ends in a runner line
	local name=$1 out line; shift
	echo "== $name"
	out=$("$@" 2>&1); local rc=$?
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' <<<"$out" | tail -n 1)
	grep -vE '^(cc|clang|gcc|ar|make)|^\s+-o |^\s*$' <<<"$out" | grep -E '^(FAIL|pass |failed:|#|not ok|==|.*error|.*warning|.*ERROR|.*WARNING|.* bare=|test  )' | head -200
	if [ -n "$line" ]; then
		set -- $line
		pass=$((pass + $1)); fail=$((fail + $3)); skip=$((skip + ${5:-0}))
		[ $rc -ne 0 ] && [ "$3" -eq 0 ] && fail=$((fail + 1))
	elif [ $rc -ne 0 ]; then
		echo "$out" | tail -n 30
		fail=$((fail + 1))
	else
		pass=$((pass + 1))
	fi
}
# Warnings are errors here: both compilers must build everything cleanly.
run "build (gcc)" make -j2 O=build CC=gcc EXTRA_WARN=-Werror all
run "build (clang)" make -j2 O=build-clang CC=clang EXTRA_WARN=-Werror all
run "install, README example, exported symbols" tests/install.sh
run "tests" make -j2 O=build CC=gcc check
run "Linux's KVM selftests, bare and under gmem exec" tests/kvm-selftests.sh
run "tests under ASan+UBSan" make -j2 check-asan
run "threaded tests under TSan" make -j2 check-tsan
run "examples through gmem run" make -s O=build examples
run "SPIN model of the invalidation protocol" make -s O=build model
fuzz() {	# fuzz TARGET SECONDS: libFuzzer's progress lines are noise here: keep its verdict
	local log="${O:-build}/$1.log"
	make -s "$1" FUZZ_SECONDS="$2" >"$log" 2>&1
	local rc=$?
	if [ $rc -eq 0 ]; then
		grep -E '^Done' "$log" | sed "s/^/pass $1: /"
	else
		tail -n 40 "$log"
	fi
	return $rc
}
run "scenario fuzzing (${GMEM_FUZZ_SECONDS:-30} s)" fuzz fuzz "${GMEM_FUZZ_SECONDS:-30}"
# The API fuzzer, one thread then two: 10 s each.
run "API fuzzing (2 x ${GMEM_FUZZ_API_SECONDS:-10} s)" fuzz fuzz-api "${GMEM_FUZZ_API_SECONDS:-10}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
