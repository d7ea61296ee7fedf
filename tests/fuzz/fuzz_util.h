/* Helpers shared by the fuzz harnesses (tests/fuzz/fuzz_*.c): a reader
 * that turns the fuzzer's bytes into typed values, and a check that
 * crashes, so that libFuzzer saves the input that broke an invariant.
 * Header-only: each harness includes it once. */
#ifndef PF_TESTS_FUZZ_UTIL_H
#define PF_TESTS_FUZZ_UTIL_H

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fail the run: print why and abort, which libFuzzer reports as a crash
 * with the input saved. Used for broken invariants, never for input the
 * library rightly refuses. */
#define FUZZ_CHECK(cond, ...)                                                  \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz check failed at %s:%d: %s\n", __FILE__,     \
                    __LINE__, #cond);                                          \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* The unread rest of the input. Every read past the end yields zeros. */
typedef struct fz {
    const uint8_t *p;
    size_t n;
} fz_t;

static inline uint8_t
fz_u8(fz_t *f)
{
    uint8_t v = 0;

    if (f->n > 0) {
        v = f->p[0];
        f->p++;
        f->n--;
    }
    return v;
}

static inline uint64_t
fz_bytes_u64(fz_t *f, size_t width)
{
    uint64_t v = 0;
    size_t i;

    for (i = 0; i < width; i++) {
        v = v << 8 | fz_u8(f);
    }
    return v;
}

static inline uint32_t
fz_u32(fz_t *f)
{
    return (uint32_t)fz_bytes_u64(f, 4);
}

static inline uint64_t
fz_u64(fz_t *f)
{
    return fz_bytes_u64(f, 8);
}

static inline bool
fz_bool(fz_t *f)
{
    return (fz_u8(f) & 1) != 0;
}

/* An unsigned that is often one of the edges (0, 1, 2, UINT_MAX, ...)
 * and otherwise any 32-bit value: a raw draw rarely lands on an edge. */
static inline unsigned
fz_unsigned(fz_t *f)
{
    static const unsigned edges[] = {0u, 1u, 2u, 3u, 4u, 10u, 100u, 1000u,
                                     1000000u, 16777215u, 16777216u,
                                     1073741824u, 1073741825u, 0x7fffffffu,
                                     0x80000000u, 0xffffffffu};
    uint8_t sel = fz_u8(f);

    if (sel < 2 * sizeof(edges) / sizeof(edges[0])) {
        return edges[sel / 2];
    }
    return (unsigned)fz_u32(f);
}

/* A double that is often special (NaN, infinities, zero of either sign,
 * the largest and smallest, and ordinary values) and otherwise any 64-bit
 * pattern. */
static inline double
fz_double(fz_t *f)
{
    static const double special[] = {
        0.0,    -0.0,  1.0,    -1.0,  0.5,     2.0,     10.0,  60.0,
        100.0,  1e-9,  1e-300, 1e9,   1e18,    1e300,   86400, 1e-3,
        DBL_MAX, -DBL_MAX, DBL_MIN, DBL_TRUE_MIN, 9.3e18, 1.8e19, 0.999999,
        100.0000001};
    uint8_t sel = fz_u8(f);
    uint64_t bits;
    double v;

    if (sel == 0) {
        return NAN;
    }
    if (sel == 1) {
        return INFINITY;
    }
    if (sel == 2) {
        return -INFINITY;
    }
    sel -= 3;
    if (sel < sizeof(special) / sizeof(special[0])) {
        return special[sel];
    }
    if (sel < 128) {
        return (double)fz_u32(f) / 1000.0; /* an ordinary duration */
    }
    bits = fz_u64(f);
    memcpy(&v, &bits, sizeof(v));
    return v;
}

/* A string of up to cap - 1 bytes (length byte, then bytes; an embedded
 * NUL ends it) into buf, NUL-terminated. Returns buf. */
static inline char *
fz_str(fz_t *f, char *buf, size_t cap)
{
    size_t len = fz_u8(f);
    size_t i;

    if (len > cap - 1) {
        len = cap - 1;
    }
    if (len > f->n) {
        len = f->n;
    }
    for (i = 0; i < len; i++) {
        buf[i] = (char)f->p[i];
    }
    buf[len] = '\0';
    f->p += len;
    f->n -= len;
    return buf;
}

#endif /* PF_TESTS_FUZZ_UTIL_H */
