// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdio.h>

#include "common.h"

static _Thread_local char last_error[256] = "no error";

/* Records why a call failed and returns -@err, so sites read "return gmem_err(...)". */
int gmem_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	return -err;
}

GMEM_API const char *gmem_last_error(void)
{
	return last_error;
}
