/* puffinflow — the allocator hook.
 *
 * Everything the library allocates goes through four functions that a
 * program may replace, as many C libraries allow: to use its own allocator,
 * to account memory, or (in tests) to make the k-th allocation fail. */
#ifndef PUFFINFLOW_ALLOC_H
#define PUFFINFLOW_ALLOC_H

#include <stddef.h>

#include "puffinflow/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void *(*pf_malloc_fn)(size_t size);
typedef void *(*pf_realloc_fn)(void *ptr, size_t size);
typedef void *(*pf_calloc_fn)(size_t count, size_t size);
typedef void (*pf_free_fn)(void *ptr);

/* Replace the allocator: all four functions, or all four NULL to go back to
 * libc's. They must behave as the C standard's functions do (free(NULL) is a
 * no-op; NULL means failure). Returns 0, or PF_EINVAL when only some are
 * NULL (nothing changes).
 * Not thread-safe: call it before any other puffinflow function, or when no
 * puffinflow object exists, since memory from one allocator must go back to
 * the same one. */
PF_API int pf_set_allocator(pf_malloc_fn malloc_fn, pf_realloc_fn realloc_fn,
                            pf_calloc_fn calloc_fn, pf_free_fn free_fn);

/* Free memory the library allocated and handed to the caller (strings such
 * as a JSON report), with the allocator in use. NULL is a no-op. */
PF_API void pf_free(void *ptr);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_ALLOC_H */
