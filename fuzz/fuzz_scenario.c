// SPDX-License-Identifier: MIT
/*
 * fuzz_scenario - libFuzzer target for the scenario language: parse any
 * bytes, and run what parses against small pools (1 GiB per arch). Inputs of
 * odd length run with the trace on (text, or JSON when the first byte is
 * odd) into /dev/null, so the trace (hook recording, snapshots) is fuzzed too. Nothing may
 * crash, leak or trip a sanitizer. "make fuzz".
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "scenario.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *null;
	struct scn_opts o = { .pool_capacity = 1ULL << 30 };
	struct scenario s;

	if (!null)
		null = fopen("/dev/null", "w");
	if (size & 1) {
		o.out = null;
		o.trace = true;
		o.json = data[0] & 1;
	}
	if (!scenario_parse(&s, "fuzz", (const char *)data, size))
		scenario_run(&s, &o);
	scenario_free(&s);
	return 0;
}
