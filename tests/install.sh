#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make install into a scratch prefix; the README's example must build against
# it with pkg-config and run; libgmem.so must export gmem_* symbols only.
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -s install PREFIX="$tmp/prefix" >/dev/null
sed -n '/^```c$/,/^```$/p' README.md | sed '1d;$d' > "$tmp/example.c"
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
# The documented build alone: no rpath or LD_LIBRARY_PATH of the test's own
# (gmem.pc carries the rpath of a prefix the loader does not search).
cc -std=c11 -Wall -Wextra -Werror "$tmp/example.c" $(pkg-config --cflags --libs gmem) \
	-o "$tmp/example"
"$tmp/example" | grep -q 'guest reads "hello"'
bad=$(nm -D --defined-only "$tmp/prefix/lib/libgmem.so" | awk '$2 ~ /[TDBR]/ && $3 !~ /^gmem_/')
[ -z "$bad" ] || { echo "unexpected exports: $bad"; exit 1; }
# The KVM layer: found by the installed command, exporting only the C
# library calls it takes over.
layer=$tmp/prefix/lib/gmem/libgmem-kvm.so
want="close dup2 dup3 fallocate fallocate64 ioctl madvise mlockall mmap mmap64 mprotect mremap msync munmap pthread_sigmask sigaction signal sigprocmask"
got=$(nm -D --defined-only "$layer" | awk '$2 ~ /[TDBR]/ {print $3}' | sort | xargs)
[ "$got" = "$want" ] || { echo "libgmem-kvm.so exports: $got"; exit 1; }
out=$(env -u GMEM_KVM_LIB "$tmp/prefix/bin/gmem" exec -- sh -c 'echo "$LD_PRELOAD"')
[ "$out" = "$layer" ] || { echo "gmem exec preloads '$out', not $layer"; exit 1; }
# Man pages: one per exported call (section 3), one per command (section 1).
missing=
for sym in $(nm -D --defined-only "$tmp/prefix/lib/libgmem.so" | awk '$3 ~ /^gmem_/ {sub(/@.*/, "", $3); print $3}'); do
	[ -s "$tmp/prefix/share/man/man3/$sym.3" ] || missing="$missing $sym"
done
[ -z "$missing" ] || { echo "exported calls without a man page:$missing"; exit 1; }
for cmd in gmem gmem-exec gmem-vm gmem-check gmem-bench gmem-run; do
	[ -s "$tmp/prefix/share/man/man1/$cmd.1" ] || { echo "no man page for $cmd"; exit 1; }
done
if command -v groff >/dev/null; then
	for page in "$tmp"/prefix/share/man/man*/*.[13]; do
		warn=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
		[ -z "$warn" ] || { echo "$page: $warn"; exit 1; }
	done
fi
echo "3 passed, 0 failed"
