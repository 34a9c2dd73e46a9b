/*
 * memory.h - allocations for the large, long-lived buffers the engine
 * streams through on every pass (packed weights, workspace arenas).
 */
#ifndef IGSERVE_MEMORY_H
#define IGSERVE_MEMORY_H

#include <stddef.h>

/*
 * memory_alloc_large - at least `bytes`, 64-byte aligned, released with free().
 * The 2 MiB pages inside the block are offered to transparent huge pages: a
 * ResNet-50 pass reads ~100 MB of weights, and with 4 KiB pages the TLB
 * misses cost about 6% of a batch-1 forward.
 */
void *memory_alloc_large(size_t bytes);

/*
 * memory_release_pages - give the whole pages inside [p, p + bytes) back to the
 * system (MADV_DONTNEED): anonymous memory reads as zeros afterwards, a file
 * mapping faults its pages back in from the file.  NULL is fine.
 */
void memory_release_pages(const void *p, size_t bytes);

#endif
