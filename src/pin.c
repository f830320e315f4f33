// SPDX-License-Identifier: MIT
/*
 * Long-term pins (the GUP/FOLL_LONGTERM analogue of VFIO, vhost, io_uring
 * fixed buffers). A pinned page is an extra reference: conversion to private
 * refuses it with -EAGAIN, and punching a hole leaves it in place. Pins are
 * taken and dropped through the file handle, so they do not keep the file
 * alive: once nobody can unpin them, release drops them with the file.
 *
 * Pins are kept as sorted, disjoint runs of pages with a count each, so
 * pinning a whole guest costs one entry. Runs change under pins_lock, and
 * only while the file's invalidate lock is held (shared here, exclusive for
 * conversion), so a conversion sees a stable set.
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "attr.h"
#include "check.h"
#include "file.h"
#include "inject.h"
#include "lock.h"
#include "pin.h"

struct pin {
	uint64_t start, end;	/* a run of pages */
	uint32_t count;
};

/* Index of the first run ending after @index. */
static size_t first_after(struct gmem_file *file, uint64_t index)
{
	size_t lo = 0, hi = file->npins;

	lock_assert_held(&file->pins_lock);
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (file->pins[mid].end <= index)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool pin_first_in_range(struct gmem_file *file, uint64_t start, uint64_t end,
			uint64_t *index)
{
	bool found = false;
	size_t i;

	mutex_lock(&file->pins_lock);
	i = first_after(file, start);
	if (i < file->npins && file->pins[i].start < end) {
		*index = MAX(start, file->pins[i].start);
		found = true;
	}
	mutex_unlock(&file->pins_lock);
	return found;
}

uint32_t pin_count(struct gmem_file *file, uint64_t index)
{
	uint32_t count = 0;
	size_t i;

	mutex_lock(&file->pins_lock);
	i = first_after(file, index);
	if (i < file->npins && file->pins[i].start <= index)
		count = file->pins[i].count;
	mutex_unlock(&file->pins_lock);
	return count;
}

static void push(struct pin *out, size_t *n, uint64_t start, uint64_t end,
		 uint32_t count)
{
	if (!count || start >= end)
		return;
	if (*n && out[*n - 1].end == start && out[*n - 1].count == count) {
		out[*n - 1].end = end;	/* keep runs maximal */
		return;
	}
	out[(*n)++] = (struct pin){ .start = start, .end = end, .count = count };
}

/*
 * Add @delta (+1 or -1) to every page of [start, end), building the new run
 * list aside so a failure changes nothing.
 */
static int adjust(struct gmem_file *file, uint64_t start, uint64_t end,
		  int delta)
{
	size_t n = 0, i = first_after(file, start);
	uint64_t pos = start;
	struct pin *out;

	lock_assert_held(&file->pins_lock);

	if (delta < 0) {	/* every page must be pinned already */
		for (size_t j = i; pos < end; j++) {
			if (j >= file->npins || file->pins[j].start > pos)
				return gmem_err(EINVAL, "gmem_unpin: page at %#llx is not pinned",
						(unsigned long long)(pos << PAGE_SHIFT));
			pos = file->pins[j].end;
		}
		pos = start;
	}
	for (size_t j = i; j < file->npins && file->pins[j].start < end; j++)
		if (delta > 0 && file->pins[j].count == INT32_MAX)
			return gmem_err(EOVERFLOW, "gmem_pin: page pinned too often");

	/* Each old run yields at most three pieces and one gap, plus a last gap. */
	out = try_malloc((4 * file->npins + 2) * sizeof(*out));
	if (!out)
		return gmem_err(ENOMEM, "gmem_pin: out of memory");
	for (size_t j = 0; j < i; j++)
		push(out, &n, file->pins[j].start, file->pins[j].end,
		     file->pins[j].count);
	for (; i < file->npins && file->pins[i].start < end; i++) {
		struct pin p = file->pins[i];

		push(out, &n, p.start, MIN(p.end, start), p.count);
		if (delta > 0 && pos < p.start)	/* a gap */
			push(out, &n, pos, MIN(p.start, end), 1);
		push(out, &n, MAX(p.start, start), MIN(p.end, end),
		     p.count + delta);
		push(out, &n, end, p.end, p.count);
		pos = MAX(pos, p.end);
	}
	if (pos < end && delta > 0)
		push(out, &n, pos, end, 1);
	for (; i < file->npins; i++)
		push(out, &n, file->pins[i].start, file->pins[i].end,
		     file->pins[i].count);
	free(file->pins);
	file->pins = out;
	file->npins = n;
	return 0;
}

static int pin_range(int fd, uint64_t offset, uint64_t size, int delta,
		     const char *fn)
{
	struct gmem_file *file;
	uint64_t start = offset >> PAGE_SHIFT, end;
	int ret = file_get(fd, fn, &file);

	if (ret)
		return ret;
	ret = file_check_range(file, offset, size, fn);
	if (ret)
		goto out;
	end = (offset + size) >> PAGE_SHIFT;

	brlock_read_lock(&file->invalidate_lock);
	if (delta > 0 && !attr_range_is(&file->attrs, start, end, 0)) {
		ret = gmem_err(EFAULT, "%s: the range holds private pages, which the host cannot reach", fn);
	} else {
		mutex_lock(&file->pins_lock);
		ret = adjust(file, start, end, delta);
		mutex_unlock(&file->pins_lock);
		if (!ret && delta > 0)	/* pinning faults the pages in */
			folio_alloc_range(file, start, end);
	}
	brlock_read_unlock(&file->invalidate_lock);
	check_after(file->vm, fn);
out:
	file_put(file);
	return ret;
}

GMEM_API int gmem_pin(int fd, uint64_t offset, uint64_t size)
{
	KEEP_ERRNO();
	return pin_range(fd, offset, size, +1, "gmem_pin");
}

GMEM_API int gmem_unpin(int fd, uint64_t offset, uint64_t size)
{
	KEEP_ERRNO();
	return pin_range(fd, offset, size, -1, "gmem_unpin");
}
