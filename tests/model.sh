#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The SPIN model of the invalidation protocol (src/invalidate.pml, see
# docs/design.md): the protocol as gmem runs it must verify with no error,
# and each deliberately broken variant must end in the error it causes (an
# assertion's trail, or a deadlock), and no fault retries forever while the
# scheduler is weakly fair (a non-progress cycle, which an unfair one does
# show). One line per variant with the states,
# depth, memory and time SPIN reports; --deep adds the correct model at
# larger bounds. Without spin (Debian package spin) every row is skipped
# with that reason. Last line: "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.." || exit 2
model=$PWD/src/invalidate.pml
dir=${O:-build}/model

# name|spin -D flags|expected: none, assertion, deadlock or cycle|search:
# safety (assertions, end states), fair or unfair (non-progress cycles)
variants=(
	"correct|-DCORRECT|none|safety"
	"gmem faults only|-DGMEM_FAULTS_ONLY|none|safety"
	"no fault retries forever (weak fairness)|-DCORRECT|none|fair"
	"a fault retries forever (unfair scheduler)|-DCORRECT|cycle|unfair"
	"no sequence re-check|-DBROKEN_NO_SEQ_RECHECK|assertion|safety"
	"no in-progress test|-DBROKEN_NO_IN_PROGRESS|assertion|safety"
	"overlap test off by one|-DBROKEN_OVERLAP_OFF_BY_ONE|assertion|safety"
	"snapshot after the attribute|-DBROKEN_SNAPSHOT_LATE|assertion|safety"
	"range reset by each start|-DBROKEN_RANGE_RESET|assertion|safety"
	"attribute stored after the end|-DBROKEN_STORE_AFTER_END|assertion|safety"
	"mmu_lock before the file lock|-DBROKEN_LOCK_ORDER|deadlock|safety"
	"gmem faults only, no sequence re-check|-DGMEM_FAULTS_ONLY -DBROKEN_NO_SEQ_RECHECK|none|safety"
	"gmem faults only, overlap off by one|-DGMEM_FAULTS_ONLY -DBROKEN_OVERLAP_OFF_BY_ONE|none|safety"
)
if [ "${1:-}" = --deep ]; then
	variants+=(
		"correct, 2 conversions|-DNCONV=2|none|safety"
		"correct, 2 faults per vCPU|-DNFAULT=2|none|safety"
	)
fi

pass=0 fail=0 skip=0
if ! command -v spin >/dev/null 2>&1; then
	echo "# skipping every model check: spin is not installed (Debian package spin)"
	for v in "${variants[@]}"; do
		echo "skip model ${v%%|*}: spin is not installed (Debian package spin)"
		skip=$((skip + 1))
	done
	echo "$pass passed, $fail failed, $skip skipped"
	exit 0
fi

for v in "${variants[@]}"; do
	IFS='|' read -r name flags expect search <<<"$v"
	# -DNP: look for cycles without progress; -f: weak fairness over the
	# 6 processes (NFAIR sizes its tables).
	case $search in
	safety) ccflags=-DSAFETY panflags= ;;
	fair)   ccflags="-DNP -DNFAIR=3" panflags="-l -f" ;;
	unfair) ccflags=-DNP panflags=-l ;;
	esac
	d=$dir/$(tr -c 'a-z0-9\n' _ <<<"$name")
	rm -rf "$d" && mkdir -p "$d"
	# spin -a writes pan.[bchmt] where it runs; the trail goes there too.
	# shellcheck disable=SC2086
	if ! (cd "$d" && spin -a $flags "$model" >spin.log 2>&1 &&
	      ${CC:-gcc} -w -O2 $ccflags -DCOLLAPSE -o pan pan.c >>spin.log 2>&1); then
		echo "FAIL model $name: spin or the compiler failed"; tail -n 20 "$d/spin.log"
		fail=$((fail + 1)); continue
	fi
	# -m: search depth bound (the model's deepest path is under 200 steps).
	# shellcheck disable=SC2086
	(cd "$d" && ./pan -m10000 -w23 $panflags >pan.log 2>&1)
	log=$d/pan.log
	errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$log")
	states=$(awk '/states, stored/ { print $1; exit }' "$log")
	depth=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$log")
	mem=$(awk '/total actual memory usage/ { print $1; exit }' "$log")
	secs=$(sed -n 's/^pan: elapsed time \([0-9.e+-]*\) seconds.*/\1/p' "$log")
	got=none
	grep -q '^pan:[0-9]*: assertion violated' "$log" && got=assertion
	grep -q '^pan:[0-9]*: invalid end state' "$log" && got=deadlock
	grep -q '^pan:[0-9]*: non-progress cycle' "$log" && got=cycle
	[ -z "$errors" ] && got=unknown
	figures="$states states, depth $depth, $mem MB, $secs s"
	if [ "$got" = "$expect" ] && { [ "$expect" != none ] || [ "$errors" = 0 ]; }; then
		if [ "$expect" = none ]; then
			echo "pass model $name: no error; $figures"
		else
			echo "pass model $name: $got found ($d/invalidate.pml.trail); $figures"
		fi
		pass=$((pass + 1))
	else
		echo "FAIL model $name: expected $expect, got $got (errors ${errors:-?}); $figures"
		grep -E 'pan:|errors' "$log" | head -n 5
		fail=$((fail + 1))
	fi
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
