/*
 * fuzz_tfbundle_index.c - libFuzzer target: a TensorBundle .index parsed from
 * memory (tfbundle_parse_index_memory): the table footer, block CRCs, snappy,
 * prefix-compressed entries, restart points and the protobuf records.
 *
 * Seeds: the .index files in tests/fixtures/tfbundle and the variables.index
 * files under ../shared/testdata/tf-checkpoints.  Build with
 * -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION so that tfbundle.c does not stop
 * at the block CRCs (otherwise almost every mutation ends there), e.g.
 *   clang -fsanitize=fuzzer,address,undefined -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION \
 *     -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Isrc/weights -Isrc/util \
 *     fuzz/fuzz_tfbundle_index.c src/weights/tfbundle*.c src/util/file.c src/util/error.c \
 *     src/util/memory.c -lcrypto \
 *     -lsnappy
 */
#include <stddef.h>
#include <stdint.h>

#include "tfbundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tfb_file *f = NULL;
	struct igs_error err;
	if (tfbundle_parse_index_memory(&f, data, size, "fuzz", &err) == 0) {
		/* walk what was parsed, as a reader of the model would */
		for (size_t i = 0; i < tfbundle_count(f); i++) {
			const struct tfb_tensor *t = tfbundle_at(f, i);
			if (tfbundle_find(f, t->name) != t)
				__builtin_trap();
			(void)tfbundle_dtype_name(t->dtype);
		}
		tfbundle_close(&f);
	} else if (f != NULL || err.message[0] == 0) {
		__builtin_trap(); /* a failure must leave nothing and say why */
	}
	return 0;
}
