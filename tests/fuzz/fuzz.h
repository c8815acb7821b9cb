/*
 * tests/fuzz/fuzz.h - the one entry point every fuzz target defines.
 *
 * Each target file (fuzz_proto.c, fuzz_block.c, fuzz_st.c) implements
 * LLVMFuzzerTestOneInput. The same object is linked two ways:
 *  - with clang -fsanitize=fuzzer (VKV_FUZZ=ON): a libFuzzer binary;
 *  - with replay.c (every build): a plain program that feeds each file of the
 *    checked-in corpus to the entry point once, registered as a unit test.
 * A target reports a violated property by calling abort() (libFuzzer and
 * CTest both see it); it never exits on a merely rejected input.
 */
#ifndef VKV_FUZZ_H
#define VKV_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Runs one input. `data[0..size)` is owned by the caller and only read.
 * Returns 0 (libFuzzer's convention; other values are reserved). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with a message when a fuzzed property fails. */
#define VKVF_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz property failed at %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
