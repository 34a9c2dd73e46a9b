/*
 * base64.h - RFC 4648 base64 (standard alphabet, '=' padding), for PNGs
 * and .npy bytes inside JSON.
 */
#ifndef IGSERVE_BASE64_H
#define IGSERVE_BASE64_H

#include <stddef.h>

/* Characters base64_encode writes for n bytes, without the NUL. */
size_t base64_encoded_len(size_t n);

/* Encode src[n] into dst (base64_encoded_len(n) + 1 bytes, NUL added). */
void base64_encode(const void *src, size_t n, char *dst);

/* Encode into a new string (caller frees); NULL when out of memory. */
char *base64_encode_alloc(const void *src, size_t n);

/*
 * base64_decode - decode `len` characters of `src` into dst (at least
 * len / 4 * 3 bytes); *out_len gets the byte count.  Returns 0, or -1 on a
 * character outside the alphabet or bad padding/length.
 */
int base64_decode(const char *src, size_t len, unsigned char *dst, size_t *out_len);

#endif
