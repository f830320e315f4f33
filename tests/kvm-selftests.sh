#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Linux's own KVM selftests, bare and under "gmem exec" (libgmem-kvm.so).
#
# usage: tests/kvm-selftests.sh [TEST...]     (default: every row of ROWS below)
#
# The selftests are GPL-2.0 and are never copied into this repository: at
# test time the script downloads Debian's linux-source package (from the
# suite below, through a private apt configuration that leaves the system's
# sources alone), unpacks it and builds the selftests into a cache directory
# outside the work tree, and reuses that build on later runs.
#
# Each test runs once bare, then once per row under
#   $GMEM exec OPTIONS -- TEST
# Only the layered runs count; the bare result is printed beside them for
# information (some bare runs fail or skip on hosts without the features).
# Selftest exit codes: 0 pass, 4 skip (KSFT_SKIP), anything else fail.
# If the download or build fails, or /dev/kvm cannot be opened read-write,
# every row is reported as skipped with the reason. Last line:
# "N passed, N failed, N skipped".
#
# Environment:
#   GMEM                  the gmem CLI (default: build/gmem in the repo)
#   GMEM_SELFTEST_CACHE   cache directory (default: /var/tmp/gmem-selftests)
#   GMEM_SELFTEST_TIMEOUT seconds per run (default: 120)
#   GMEM_LINUX_SOURCE     Debian package (default: linux-source-7.3)
#   GMEM_DEBIAN_SUITE     suite that has it (default: trixie-backports)
#   GMEM_DEBIAN_MIRROR    (default: http://deb.debian.org/debian)
set -u

# (test, options) rows: one layered run each. The test is a path under the
# selftests' OUTPUT directory; options go between "exec" and "--".
ROWS=(
	"guest_memfd_test|--attributes in-place --check"
	"guest_memfd_test|--attributes in-place --arch snp --check"
	"guest_memfd_test|--attributes in-place --arch tdx --check"
	"guest_memfd_test|--attributes in-place --arch pkvm --check"
	"guest_memfd_test|--attributes in-place --arch pkvm --contract legacy"
	"guest_memfd_test|--attributes per-vm --check"
	"guest_memfd_test|--attributes per-vm --arch snp"
	"guest_memfd_test|--attributes per-vm --arch tdx"
	"guest_memfd_test|--attributes per-vm --arch pkvm"
	"x86/private_mem_kvm_exits_test|--attributes per-vm --check"
	"x86/private_mem_kvm_exits_test|--attributes per-vm --arch snp"
	"x86/private_mem_kvm_exits_test|--attributes in-place"
	"x86/private_mem_conversions_test|--attributes per-vm"
	"x86/private_mem_conversions_test|--attributes in-place"
	"vm_types_test|--attributes per-vm"
	"vm_types_test|--attributes in-place"
	"set_memory_region_test|--attributes per-vm"
	"set_memory_region_test|--attributes in-place"
)
# Rows known not to apply: reported as skipped with the reason, not run.
PER_VM_ONLY="7.3's test keeps guest code in its SW_PROTECTED slot 0's userspace_addr, which an in-place gmem-only memslot does not use (written for per-VM attributes)"
NO_HYPERCALL_EXIT="its guest converts with the KVM_HC_MAP_GPA_RANGE hypercall, which never exits to userspace on this host's PVM KVM (host-kvm.md): the guest spins"
EXPECTED_SKIP=(
	"x86/private_mem_kvm_exits_test|--attributes in-place|$PER_VM_ONLY"
	"x86/private_mem_conversions_test|--attributes in-place|$PER_VM_ONLY"
	"x86/private_mem_conversions_test|--attributes per-vm|$NO_HYPERCALL_EXIT"
)
# Host faults that stop a test before anything the layer owns: a layered
# run that fails with this line, as the bare run does, is a skip with the
# reason (test|the failure line, as grep -F finds it|reason).
HOST_FAILURE=(
	"set_memory_region_test|Wanted KVM exit reason: 17 (INTERNAL_ERROR), got: 8 (SHUTDOWN)|this host's PVM KVM reports MMIO during vectoring as SHUTDOWN (host-kvm.md), before the test reaches its memslot and guest_memfd parts"
)

usage() { sed -n '3,28s/^# \{0,1\}//p' "$0"; }
case "${1:-}" in -h|--help) usage; exit 0;; esac

# GMEM relative to the caller's directory, before moving to the repo root.
if [ -n "${GMEM:-}" ]; then
	case $GMEM in */*) GMEM=$(realpath -m -- "$GMEM");; *) GMEM=$(command -v "$GMEM" || echo "$GMEM");; esac
fi
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd -P)
GMEM=${GMEM:-$ROOT/build/gmem}
C=$(realpath -m -- "${GMEM_SELFTEST_CACHE:-/var/tmp/gmem-selftests}")
LIMIT=${GMEM_SELFTEST_TIMEOUT:-120}
PKG=${GMEM_LINUX_SOURCE:-linux-source-7.3}
SUITE=${GMEM_DEBIAN_SUITE:-trixie-backports}
MIRROR=${GMEM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SRC=$C/$PKG		# the unpacked kernel tree
OUT=$C/out		# the selftests' OUTPUT directory
LOG=$C/build.log

case "$C/" in "$ROOT"/*)
	echo "GMEM_SELFTEST_CACHE ($C) is inside the repository; the GPL selftests must stay outside it" >&2
	exit 2;;
esac

# Rows selected by the arguments (test path or its last component).
rows=()
for r in "${ROWS[@]}"; do
	t=${r%%|*}
	if [ $# -eq 0 ]; then rows+=("$r"); continue; fi
	for a in "$@"; do
		if [ "$a" = "$t" ] || [ "$a" = "${t##*/}" ]; then rows+=("$r"); break; fi
	done
done
if [ ${#rows[@]} -eq 0 ]; then echo "no row matches: $*" >&2; exit 2; fi
tests=()	# distinct tests, in row order
for r in "${rows[@]}"; do
	t=${r%%|*}
	case " ${tests[*]} " in *" $t "*) ;; *) tests+=("$t");; esac
done

expected_skip() {	# expected_skip TEST OPTIONS: print the reason, or fail
	local e
	for e in "${EXPECTED_SKIP[@]}"; do
		if [ "${e%%|*}" = "$1" ]; then
			e=${e#*|}
			if [ "${e%%|*}" = "$2" ]; then echo "${e#*|}"; return 0; fi
		fi
	done
	return 1
}

host_failure() {	# host_failure TEST LOG BARELOG: print the reason, or fail
	local e line
	for e in "${HOST_FAILURE[@]}"; do
		[ "${e%%|*}" = "$1" ] || continue
		e=${e#*|}; line=${e%%|*}
		if grep -qF -- "$line" "$2" && grep -qF -- "$line" "$3"; then
			echo "${e#*|}"; return 0
		fi
	done
	return 1
}

pass=0 fail=0 skip=0
row_line() {	# row_line TEST OPTIONS BARE LAYERED [NOTE]
	printf '%-33s %-32s bare=%-5s layered=%-5s%s\n' "$1" "$2" "$3" "$4" "${5:+  # $5}"
}
header() { printf '%-33s %-32s %-10s %s\n' test options bare layered; }
skip_all() {	# skip_all REASON: every row skipped, then the summary
	local r
	echo "skipping every test: $1"
	header
	for r in "${rows[@]}"; do
		row_line "${r%%|*}" "${r#*|}" skip skip "$1"
		skip=$((skip + 1))
	done
	echo "$pass passed, $fail failed, $skip skipped"
	exit 0
}

# --- /dev/kvm -----------------------------------------------------------
if [ ! -c /dev/kvm ]; then
	skip_all "/dev/kvm does not exist"
elif ! { : <>/dev/kvm; } 2>/dev/null; then
	skip_all "/dev/kvm cannot be opened read-write (uid $(id -u); check its permissions)"
fi

# --- cache, one run at a time -------------------------------------------
mkdir -p "$C" 2>/dev/null || skip_all "cannot create the cache directory $C"
exec 9>>"$C/lock" || skip_all "cannot write $C/lock"
if ! flock -w 1800 9; then skip_all "$C is locked by another run"; fi

# --- download and build (only what is missing) ---------------------------
missing=()
for t in "${tests[@]}"; do [ -x "$OUT/$t" ] || missing+=("$t"); done

as_root() {	# as_root CMD...: the command, through sudo -n when not root
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}
apt_private() {	# apt_private ARGS...: apt-get with the cache's own sources
	apt-get -o Dir::Etc::sourcelist="$C/apt/etc/sources.list" \
		-o Dir::Etc::sourceparts="$C/apt/etc/sources.list.d" \
		-o Dir::State::Lists="$C/apt/lists" \
		-o Dir::Cache="$C/apt/cache" \
		-o APT::Sandbox::User="$(id -un)" "$@"
}
fetch_source() {	# download PKG and unpack it to $SRC; 1 with $reason on failure
	local deb unpack=$C/unpack
	reason="cannot set up $C/apt"
	mkdir -p "$C/apt/lists/partial" "$C/apt/etc/sources.list.d" "$C/apt/cache/archives/partial" || return 1
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main" \
		>"$C/apt/etc/sources.list" || return 1
	echo "== apt-get update ($SUITE)"
	reason="apt-get update of $MIRROR $SUITE failed (no network?)"
	apt_private update || return 1
	# apt-get update only warns when a source cannot be fetched
	compgen -G "$C/apt/lists/*_dists_${SUITE}_*Packages*" >/dev/null || return 1
	rm -f "$C/${PKG}"_*.deb
	echo "== apt-get download $PKG"
	reason="apt-get download $PKG from $MIRROR $SUITE failed (package gone?)"
	(cd "$C" && apt_private download "$PKG") || return 1
	for deb in "$C/${PKG}"_*.deb; do :; done	# the only one: older ones went above
	[ -f "$deb" ] || return 1
	echo "== unpack $(basename "$deb")"
	reason="could not unpack $deb"
	rm -rf "$unpack" && mkdir -p "$unpack" || return 1
	# The package holds one tarball of the tree: stream it straight out.
	dpkg-deb --fsys-tarfile "$deb" |
		tar -xOf - --wildcards "./usr/src/$PKG.tar.*" |
		tar -xJf - -C "$unpack" || return 1
	[ -f "$unpack/$PKG/Makefile" ] || return 1
	rm -rf "$SRC" && mv "$unpack/$PKG" "$SRC" && rmdir "$unpack" && rm -f "$deb"
}
build() {	# build: returns 0, or 1 with the reason in $reason
	local tool targets=() t
	for tool in apt-get dpkg-deb tar xz make gcc; do
		command -v $tool >/dev/null || { reason="$tool is not installed"; return 1; }
	done
	if [ ! -f /usr/include/uuid/uuid.h ]; then	# the selftests link -luuid
		echo "== apt-get install uuid-dev"
		as_root apt-get update && as_root env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends uuid-dev
		[ -f /usr/include/uuid/uuid.h ] || { reason="uuid-dev (uuid/uuid.h) missing and could not be installed"; return 1; }
	fi
	if [ ! -f "$SRC/Makefile" ]; then
		fetch_source || return 1
	fi
	echo "== make headers"
	make -C "$SRC" headers || { reason="make headers failed in $SRC"; return 1; }
	for t in "${missing[@]}"; do targets+=("$OUT/$t"); done
	echo "== make ${missing[*]}"
	# -k: one test that does not build leaves the others runnable
	make -k -j"$(nproc)" -C "$SRC/tools/testing/selftests/kvm" OUTPUT="$OUT" "${targets[@]}"
	return 0
}
if [ ${#missing[@]} -gt 0 ]; then
	echo "building the KVM selftests from $PKG in $C (log: $LOG)"
	start=$SECONDS reason=
	# Nothing of the caller's make or compiler setup leaks into the kernel's.
	(unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES O OUTPUT ARCH CROSS_COMPILE LLVM CC CFLAGS LDFLAGS LDLIBS
	 build; st=$?; echo "$reason" >"$C/reason"; exit $st) >"$LOG" 2>&1
	st=$? reason=$(cat "$C/reason" 2>/dev/null); rm -f "$C/reason"
	if [ $st -ne 0 ]; then
		grep -E '^(==|E:|W:)|rror' "$LOG" | tail -n 15 | sed 's/^/    /'
		skip_all "$reason (log: $LOG)"
	fi
	echo "built in $((SECONDS - start)) s"
else
	echo "reusing the KVM selftests built in $OUT"
fi

# --- runs -----------------------------------------------------------------
mkdir -p "$C/logs"
logname() { echo "$C/logs/$(tr -c 'A-Za-z0-9=.-' '_' <<<"$*" | sed 's/_*$//').log"; }
verdict() {	# verdict LOGFILE CMD...: run; print pass|FAIL|skip
	local log=$1 rc; shift
	timeout -k 10 "$LIMIT" "$@" >"$log" 2>&1 </dev/null 9>&-
	rc=$?
	echo "# exit $rc" >>"$log"
	case $rc in
	0) echo pass;;
	4) echo skip;;
	124) echo "# timed out after ${LIMIT}s" >>"$log"; echo FAIL;;
	*) echo FAIL;;
	esac
}
skip_note() {	# the selftest's own reason for a skip, if it printed one
	grep -m 1 -E '# SKIP|SKIP' "$1" | sed -E 's/^.*SKIP[^A-Za-z0-9]*//' | cut -c 1-100
}

declare -A bare
for t in "${tests[@]}"; do
	if [ -x "$OUT/$t" ]; then
		bare[$t]=$(cd "$OUT" && verdict "$(logname bare "$t")" "$OUT/$t")
	else
		bare[$t]=skip
	fi
done

if [ ! -x "$GMEM" ]; then
	gmem_missing="$GMEM not found (build gmem first: make)"
else
	gmem_missing=
fi
header
for r in "${rows[@]}"; do
	t=${r%%|*} opts=${r#*|}
	if ! [ -x "$OUT/$t" ]; then
		row_line "$t" "$opts" "${bare[$t]}" skip "not built: see $LOG"
		skip=$((skip + 1)); continue
	fi
	if why=$(expected_skip "$t" "$opts"); then
		row_line "$t" "$opts" "${bare[$t]}" skip "not applicable: $why"
		skip=$((skip + 1)); continue
	fi
	if [ -n "$gmem_missing" ]; then
		row_line "$t" "$opts" "${bare[$t]}" skip "$gmem_missing"
		skip=$((skip + 1)); continue
	fi
	# shellcheck disable=SC2086 # the options are words
	log=$(logname "$t" $opts)
	# shellcheck disable=SC2086
	v=$(cd "$OUT" && verdict "$log" "$GMEM" exec $opts -- "$OUT/$t")
	case $v in
	pass) row_line "$t" "$opts" "${bare[$t]}" pass; pass=$((pass + 1));;
	skip) row_line "$t" "$opts" "${bare[$t]}" skip "$(skip_note "$log")"; skip=$((skip + 1));;
	*)    if why=$(host_failure "$t" "$log" "$(logname bare "$t")"); then
		row_line "$t" "$opts" "${bare[$t]}" skip "host: $why"
		skip=$((skip + 1)); continue
	      fi
	      row_line "$t" "$opts" "${bare[$t]}" FAIL "log: $log"; fail=$((fail + 1))
	      tail -n 15 "$log" | sed 's/^/    /';;
	esac
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
