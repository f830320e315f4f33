#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# man1.sh GMEM OUTDIR VERSION - section-1 pages for the gmem command and
# each subcommand, made from their --help, so a page cannot drift from the
# command it describes.
set -eu
gmem=$1 out=$2 version=$3
mkdir -p "$out"
page() {	# page NAME TITLE-LINE HELP-TEXT
	local name=$1 what=$2 help=$3 upper
	upper=$(tr '[:lower:]-' '[:upper:]-' <<<"$name")
	{
		echo '.\" SPDX-License-Identifier: MIT'
		echo ".\\\" Generated from \`$name --help' by man/man1.sh."
		echo ".TH $upper 1 \"\" \"gmem $version\" \"gmem manual\""
		echo ".SH NAME"
		echo "$name \\- $what"
		echo ".SH SYNOPSIS AND OPTIONS"
		echo ".nf"
		sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/" <<<"$help"
		echo ".fi"
		echo ".SH SEE ALSO"
		echo ".BR gmem (1),"
		echo ".BR gmem (3)"
	} >"$out/$name.1"
}
page gmem "guest_memfd in userspace: check, bench, run, vm, exec" "$("$gmem" --help)"
# Each subcommand named in gmem --help, with the first line of its entry.
"$gmem" --help | sed -n 's/^  \([a-z][a-z]*\)  *\(.*\)$/\1|\2/p' | while IFS='|' read -r cmd what; do
	help=$("$gmem" "$cmd" --help 2>&1) || true
	page "gmem-$cmd" "$what" "$help"
done
