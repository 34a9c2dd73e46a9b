/*
 * fuzz_image_decode - image_decode (JPEG and PNG, with limits) and
 * image_fit of whatever decodes.  Invariants: a success is within the
 * limits with pixels; a failure has no pixels and a message.
 *
 * The pixel limit is 1 megapixel (the service's is 40): the limits are
 * checked from the header the same way at any value, and a run then stays
 * far inside libFuzzer's memory and time limits under AddressSanitizer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct image_limits limits = {.max_bytes = 1u << 20, .max_pixels = 1u << 20};
	struct image img;
	struct igs_error err = {0};
	int rc = image_decode(&img, data, size, &limits, &err);
	if (rc != 0) {
		if (img.rgb != NULL || err.code != rc || err.message[0] == '\0')
			abort();
		return 0;
	}
	if (img.rgb == NULL || img.width <= 0 || img.height <= 0 ||
	    (uint64_t)img.width * (uint64_t)img.height > limits.max_pixels)
		abort();
	/* Fit to a small input in the mode the size picks. */
	struct image out;
	struct image_geometry g;
	enum resize_mode mode = (enum resize_mode)(size % 3);
	if (image_fit(&out, &img, 32, mode, &g, &err) == 0) {
		if (out.width != 32 || out.height != 32 || !(g.scale_x > 0) || !(g.scale_y > 0))
			abort();
		image_clear(&out);
	}
	image_clear(&img);
	return 0;
}
