/*
 * memory.c - see memory.h.
 */
#include "memory.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

enum { HUGE_PAGE = 2 << 20 };

void memory_release_pages(const void *p, size_t bytes)
{
	const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = ((uintptr_t)p + page - 1) & ~(page - 1);
	uintptr_t end = ((uintptr_t)p + bytes) & ~(page - 1);
	if (p && end > start)
		madvise((void *)start, end - start, MADV_DONTNEED);
}

void *memory_alloc_large(size_t bytes)
{
	void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
	/* Only the whole 2 MiB pages inside the block are offered, so nothing
	 * is rounded up; advice only, and where THP is off ("never") the pages
	 * stay 4 KiB. */
	uintptr_t start = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
	uintptr_t end = ((uintptr_t)p + bytes) & ~(uintptr_t)(HUGE_PAGE - 1);
	if (p && end > start)
		madvise((void *)start, end - start, MADV_HUGEPAGE);
	return p;
}
