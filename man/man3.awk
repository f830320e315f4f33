# SPDX-License-Identifier: MIT
# man3.awk - one section-3 page per function of include/gmem.h, from the
# comment above its prototype: NAME, SYNOPSIS, DESCRIPTION, ERRORS.
#   awk -v out=DIR -v version=V -f man/man3.awk include/gmem.h
# Writes DIR/NAME.3 for each function and DIR/gmem.3 (the header's opening
# comment). A function without a comment gets no page: the man test fails.

function roff(s) {
	gsub(/\\/, "\\e", s)
	sub(/^[.']/, "\\\\\\&&", s)
	return s
}

function flush_page(name, proto,   file, n, i, line, in_errors, para) {
	file = out "/" name ".3"
	print ".\\\" SPDX-License-Identifier: MIT" > file
	print ".\\\" Generated from include/gmem.h by man/man3.awk." > file
	printf ".TH %s 3 \"\" \"gmem %s\" \"gmem manual\"\n", toupper(name), version > file
	print ".SH NAME" > file
	# NAME: the first sentence of the comment's first paragraph.
	n = split(comment, lines, "\n")
	para = ""
	for (first = 1; first <= n && lines[first] != ""; first++)
		para = para (para == "" ? "" : " ") lines[first]
	sub("^ *" name " - ", "", para)
	rest = ""
	cut = index(para, ". ")
	if (cut) {
		rest = substr(para, cut + 2)
		para = substr(para, 1, cut)
	}
	print name " \\- " roff(para) > file
	print ".SH SYNOPSIS" > file
	print ".nf" > file
	print ".B #include <gmem.h>" > file
	print ".PP" > file
	print roff(proto) > file
	print ".fi" > file
	print ".SH DESCRIPTION" > file
	if (rest != "")
		print roff(rest) > file
	in_errors = 0
	for (i = first; i <= n; i++) {
		line = lines[i]
		sub(/^ */, "", line)
		if (line ~ /^Errors/ && !in_errors) {
			print ".SH ERRORS" > file
			in_errors = 1
		}
		if (line == "")
			print ".PP" > file
		else
			print roff(line) > file
	}
	print ".SH SEE ALSO" > file
	print ".BR gmem (3)," > file
	print ".BR gmem (1)" > file
	close(file)
}

BEGIN { comment = ""; in_comment = 0; proto = ""; in_proto = 0; top = 1 }

# The opening comment: the overview page.
top && /^\/\*$/ { in_top = 1; ov = ""; next }
in_top && /^ \*\// {
	in_top = 0; top = 0
	file = out "/gmem.3"
	print ".\\\" SPDX-License-Identifier: MIT" > file
	print ".\\\" Generated from include/gmem.h by man/man3.awk." > file
	printf ".TH GMEM 3 \"\" \"gmem %s\" \"gmem manual\"\n", version > file
	print ".SH NAME" > file
	print "gmem \\- guest_memfd in userspace, with in-place private<->shared conversion" > file
	print ".SH DESCRIPTION" > file
	print ".nf" > file
	n = split(ov, lines, "\n")
	for (i = 2; i <= n; i++) print roff(lines[i]) > file
	print ".fi" > file
	print ".SH SEE ALSO" > file
	print ".BR gmem (1)" > file
	close(file)
	next
}
in_top { l = $0; sub(/^ \* ?/, "", l); sub(/^ \*$/, "", l); ov = ov "\n" l; next }

# Block comments: keep the last one.
/^\/\*/ && !/\*\// { in_comment = 1; comment = ""; l = $0; sub(/^\/\* ?/, "", l); if (l != "") comment = l; next }
in_comment && /\*\// { in_comment = 0; l = $0; sub(/ *\*\/.*/, "", l); sub(/^ \* ?/, "", l); if (l != "") comment = comment (comment == "" ? "" : "\n") l; next }
in_comment { l = $0; sub(/^ \* ?/, "", l); sub(/^ \*$/, "", l); comment = comment (comment == "" ? "" : "\n") l; next }
/^\/\*.*\*\/ *$/ { l = $0; sub(/^\/\* */, "", l); sub(/ *\*\/ *$/, "", l); comment = l; next }

# Prototypes of gmem_ functions, possibly over several lines.
!in_proto && /^[a-z].*[ *]gmem_[a-z0-9_]+\(/ { in_proto = 1; proto = "" }
in_proto {
	proto = proto (proto == "" ? "" : "\n") $0
	if ($0 ~ /;/) {
		in_proto = 0
		name = proto; sub(/\(.*/, "", name); sub(/.*[ *]/, "", name)
		if (comment != "")
			flush_page(name, proto)
		comment = ""
	}
	next
}
/^#define/ || /^struct/ || /^typedef/ { next }
/^$/ { next }
