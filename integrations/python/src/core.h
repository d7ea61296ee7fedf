/* puffinflow_c._core: what core.c shares with the other files of the
 * extension (argument checks, errors, the ready awaitable, clocks). */
#ifndef PUFFINFLOW_PY_CORE_H
#define PUFFINFLOW_PY_CORE_H

#include <Python.h>

#include "puffinflow/breaker.h"
#include "puffinflow/clock.h"

/* An int in [lo, hi] (bool refused) into *out; TypeError / ValueError. */
int get_uint(PyObject *o, const char *name, unsigned long lo,
             unsigned long hi, unsigned *out);
/* A real number of seconds, >= 0, not NaN (inf allowed when inf_ok). */
int get_seconds(PyObject *o, const char *name, int inf_ok, double *out);
/* A non-empty str's UTF-8 (owned by it) into *out; ValueError when empty. */
int get_name(PyObject *o, const char **out);
/* Raise the Python exception for a library error code; returns NULL. */
PyObject *raise_code(int rc);
/* A new reference to the awaitable that is already done (result None). */
PyObject *ready(void);
/* The pf clock of an optional ManualClock argument (None = system); *keep
 * gets a new reference to keep it alive. */
int get_clock(PyObject *o, PyObject **keep, const pf_clock_t **out);
/* d[k] = v, stealing v (NULL v: an error already set). */
int dict_set(PyObject *d, const char *k, PyObject *v);
/* The library breaker of a CircuitBreaker, or NULL with TypeError. */
pf_breaker_t *breaker_of(PyObject *o);

/* In a method: RuntimeError "<what> not initialised" and return NULL when
 * the wrapped library object ptr is NULL (before __init__, or after the
 * object was cleared). */
#define REQUIRE_INIT(ptr, what)                                              \
    do {                                                                     \
        if ((ptr) == NULL) {                                                 \
            PyErr_SetString(PyExc_RuntimeError, what " not initialised");    \
            return NULL;                                                     \
        }                                                                    \
    } while (0)

/* Set up the types of extras.c and add them to module m (0 or -1). */
int extras_init(PyObject *m);

#endif
