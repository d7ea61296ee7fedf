/* puffinflow — version of the headers, and of the library in use.
 *
 * This file alone defines the version: CMake reads the three numbers below. */
#ifndef PUFFINFLOW_VERSION_H
#define PUFFINFLOW_VERSION_H

#include "puffinflow/export.h"

#define PF_VERSION_MAJOR 0
#define PF_VERSION_MINOR 2
#define PF_VERSION_PATCH 0

#define PF_VERSION_STR_(x) #x
#define PF_VERSION_STR(x) PF_VERSION_STR_(x)
/* "MAJOR.MINOR.PATCH" of these headers. */
#define PF_VERSION_STRING                                                      \
    PF_VERSION_STR(PF_VERSION_MAJOR)                                           \
    "." PF_VERSION_STR(PF_VERSION_MINOR) "." PF_VERSION_STR(PF_VERSION_PATCH)
/* 0xMMmmpp of these headers, for #if comparisons. */
#define PF_VERSION_NUM                                                         \
    ((PF_VERSION_MAJOR << 16) | (PF_VERSION_MINOR << 8) | PF_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* "MAJOR.MINOR.PATCH" of the library actually linked, which can differ from
 * PF_VERSION_STRING when a program runs against a newer shared library.
 * Returns a constant string. Thread-safe. */
PF_API const char *pf_version(void);

/* PF_VERSION_NUM of the library actually linked. Thread-safe. */
PF_API unsigned pf_version_num(void);

#ifdef __cplusplus
}
#endif

#endif /* PUFFINFLOW_VERSION_H */
