#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs every test program (or those named) with a time limit and prints
# "N passed, N failed, N skipped" last. Each program's TAP lines count.
set -u
O=${O:-build}
LIMIT=${GMEM_TEST_TIMEOUT:-300}
cd "$(dirname "$0")/.." || exit 2
if [ $# -gt 0 ]; then progs=("$@"); else progs=($(ls "$O"/tests/ | grep '^test_' | sort)); fi
pass=0 fail=0 skip=0 failed_progs=()
for p in "${progs[@]}"; do
	out=$(timeout "$LIMIT" "$O/tests/$p" 2>&1); rc=$?
	ok=$(grep -c '^ok .* # SKIP' <<<"$out"); s=$ok
	ok=$(grep '^ok ' <<<"$out" | grep -vc '# SKIP')
	bad=$(grep -c '^not ok ' <<<"$out")
	if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ "$bad" -eq 0 ]; then
		bad=1	# crashed or timed out outside any test
	fi
	pass=$((pass + ok)); fail=$((fail + bad)); skip=$((skip + s))
	if [ "$bad" -ne 0 ]; then
		failed_progs+=("$p")
		echo "FAIL $p (exit $rc)"; grep -E '^(not ok|#)' <<<"$out" | head -40
		[ $rc -eq 124 ] && echo "#   timed out after ${LIMIT}s"
	else
		echo "pass $p ($ok ok${s:+, $s skipped})"
	fi
done
[ ${#failed_progs[@]} -gt 0 ] && echo "failed: ${failed_progs[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
