/*
 * memory.c - see include/igserve/memory.h.
 */
#include "igserve/memory.h"

#include <stdlib.h>
#include <sys/mman.h>

enum { HUGE_PAGE = 2 << 20 };

void *large_alloc(size_t bytes)
{
	if (bytes < HUGE_PAGE / 2)
		return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
	size_t rounded = (bytes + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
	void *p = aligned_alloc(HUGE_PAGE, rounded);
	/* Advice only: where THP is off ("never") the pages stay 4 KiB. */
	if (p)
		madvise(p, rounded, MADV_HUGEPAGE);
	return p;
}
