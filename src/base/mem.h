/* Internal allocation helpers: everything the library allocates goes
 * through these, so pf_set_allocator() sees every byte. */
#ifndef PF_SRC_MEM_H
#define PF_SRC_MEM_H

#include <stddef.h>

void *pf__malloc(size_t size);
void *pf__calloc(size_t count, size_t size); /* checks count*size overflow */
void *pf__realloc(void *ptr, size_t size);
void pf__free(void *ptr);

/* A copy of s made with pf__malloc, or NULL on allocation failure. s must
 * not be NULL. */
char *pf__strdup(const char *s);

/* Grow *array (of elem_size items, *cap of them) to hold at least need
 * items, doubling. Returns 0 or PF_ENOMEM; on failure *array and *cap are
 * unchanged. */
int pf__grow(void **array, size_t *cap, size_t need, size_t elem_size);

#endif /* PF_SRC_MEM_H */
