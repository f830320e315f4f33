/* SPDX-License-Identifier: MIT */
/* Long-term pins of file pages (pin.c): what a conversion and a punch ask. */
#ifndef GMEM_PIN_H
#define GMEM_PIN_H

#include <stdbool.h>
#include <stdint.h>

struct gmem_file;

bool pin_first_in_range(struct gmem_file *file, uint64_t start, uint64_t end,
			uint64_t *index);
uint32_t pin_count(struct gmem_file *file, uint64_t index);

#endif
