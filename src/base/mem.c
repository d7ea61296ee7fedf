/* The allocator hook. Four function pointers, libc's by default, replaced
 * as a set by pf_set_allocator(). They are plain globals, not atomics: the
 * header requires the hook to be set before any other call (or while no
 * object exists), and thread creation orders that write before any read. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "puffinflow/alloc.h"
#include "puffinflow/error.h"

#include "mem.h"

static pf_malloc_fn g_malloc = malloc;
static pf_realloc_fn g_realloc = realloc;
static pf_calloc_fn g_calloc = calloc;
static pf_free_fn g_free = free;

int
pf_set_allocator(pf_malloc_fn malloc_fn, pf_realloc_fn realloc_fn,
                 pf_calloc_fn calloc_fn, pf_free_fn free_fn)
{
    int nulls = (malloc_fn == NULL) + (realloc_fn == NULL) +
                (calloc_fn == NULL) + (free_fn == NULL);

    if (nulls == 4) {
        g_malloc = malloc;
        g_realloc = realloc;
        g_calloc = calloc;
        g_free = free;
        return 0;
    }
    if (nulls != 0) {
        return PF_EINVAL;
    }
    g_malloc = malloc_fn;
    g_realloc = realloc_fn;
    g_calloc = calloc_fn;
    g_free = free_fn;
    return 0;
}

void
pf_free(void *ptr)
{
    g_free(ptr);
}

void *
pf__malloc(size_t size)
{
    return g_malloc(size == 0 ? 1 : size);
}

void *
pf__calloc(size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size) {
        return NULL;
    }
    if (count == 0 || size == 0) {
        count = 1;
        size = 1;
    }
    return g_calloc(count, size);
}

void *
pf__realloc(void *ptr, size_t size)
{
    return g_realloc(ptr, size == 0 ? 1 : size);
}

void
pf__free(void *ptr)
{
    g_free(ptr);
}

char *
pf__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = pf__malloc(n);

    if (copy != NULL) {
        memcpy(copy, s, n);
    }
    return copy;
}

int
pf__grow(void **array, size_t *cap, size_t need, size_t elem_size)
{
    size_t ncap = *cap == 0 ? 4 : *cap;
    void *p;

    if (need <= *cap) {
        return 0;
    }
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) {
            return PF_ENOMEM;
        }
        ncap *= 2;
    }
    if (elem_size != 0 && ncap > SIZE_MAX / elem_size) {
        return PF_ENOMEM;
    }
    p = pf__realloc(*array, ncap * elem_size);
    if (p == NULL) {
        return PF_ENOMEM;
    }
    *array = p;
    *cap = ncap;
    return 0;
}
