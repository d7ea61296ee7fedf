/* puffinflow_c._core: the CPython extension behind puffinflow_c.reliability.
 *
 * It wraps the library's circuit breaker (permit face) and bulkhead (ticket
 * face) in types whose async context managers cost one C call each way:
 * __aenter__ and __aexit__ return a ready awaitable (a stateless singleton)
 * instead of a coroutine, so `async with breaker.protect():` never suspends
 * and never allocates a coroutine. A bulkhead caller that must wait gets an
 * awaitable of this module (Wait) over an asyncio future resolved by the
 * ticket's grant callback: directly when the slot is freed on the waiting
 * loop's thread, through loop.call_soon_threadsafe from another thread.
 *
 * The Python layer (reliability.py) subclasses these types, adds the
 * dataclass configs and the exception classes, and hands the classes this
 * module raises to _setup(). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>

#include "puffinflow/breaker.h"
#include "puffinflow/bulkhead.h"
#include "puffinflow/clock.h"
#include "puffinflow/error.h"
#include "puffinflow/retry.h"

#include "core.h"

/* Set by _setup() from reliability.py. */
static PyObject *g_open_error;     /* CircuitBreakerOpenError */
static PyObject *g_full_error;     /* BulkheadFullError */
static PyObject *g_cancelled;      /* asyncio.CancelledError */
static PyObject *g_get_loop;       /* asyncio.get_running_loop */
static PyObject *g_grant;          /* reliability._grant (fut) */
static PyObject *g_expire_later;   /* reliability._expire_later */

/* The result (result code) recorded for an exception that counts as a
 * failure, and for one that is not expected (ignored by the breaker). */
enum { RES_FAILURE = 1, RES_IGNORED = 2 };

static const int g_expected_results[] = {RES_FAILURE};

/* ---- helpers: argument checks ----------------------------------------- */

/* An int in [lo, hi] (bool refused) into *out; TypeError / ValueError. */
int
get_uint(PyObject *o, const char *name, unsigned long lo, unsigned long hi,
         unsigned *out)
{
    if (!PyLong_Check(o) || PyBool_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", name,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow != 0 || v < (long long)lo || v > (long long)hi) {
        PyErr_Format(PyExc_ValueError, "%s must be in [%lu, %lu]", name, lo,
                     hi);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

/* A real number of seconds, >= 0, not NaN (inf allowed when inf_ok). */
int
get_seconds(PyObject *o, const char *name, int inf_ok, double *out)
{
    if (PyBool_Check(o) || !(PyLong_Check(o) || PyFloat_Check(o))) {
        PyErr_Format(PyExc_TypeError, "%s must be a number, not %.100s",
                     name, Py_TYPE(o)->tp_name);
        return -1;
    }
    double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (isnan(v) || v < 0 || (!inf_ok && isinf(v))) {
        PyErr_Format(PyExc_ValueError, "%s must be a non-negative %snumber",
                     name, inf_ok ? "" : "finite ");
        return -1;
    }
    *out = v;
    return 0;
}

/* A non-empty str's UTF-8 (owned by it) into *out; ValueError when empty. */
int
get_name(PyObject *o, const char **out)
{
    const char *s = PyUnicode_AsUTF8(o);
    if (s == NULL) {
        return -1;
    }
    if (s[0] == '\0') {
        PyErr_SetString(PyExc_ValueError, "name must not be empty");
        return -1;
    }
    *out = s;
    return 0;
}

PyObject *
raise_code(int rc)
{
    if (rc == PF_ENOMEM) {
        return PyErr_NoMemory();
    }
    PyErr_Format(rc == PF_EINVAL ? PyExc_ValueError : PyExc_RuntimeError,
                 "puffinflow: %s", pf_strerror(rc));
    return NULL;
}

/* ---- Ready: an awaitable that is already done (result None) ----------- */

typedef struct {
    PyObject_HEAD
} ReadyObject;

static PyObject *
ready_await(PyObject *self)
{
    return Py_NewRef(self);
}

static PyObject *
ready_next(PyObject *self)
{
    (void)self;
    return NULL; /* no error set: StopIteration, value None */
}

static PyObject *
ready_send(PyObject *self, PyObject *arg)
{
    (void)self;
    (void)arg;
    PyErr_SetNone(PyExc_StopIteration);
    return NULL;
}

static PyMethodDef ready_methods[] = {
    {"send", ready_send, METH_O, NULL},
    {NULL, NULL, 0, NULL}};

static PyAsyncMethods ready_async = {.am_await = ready_await};

static PyTypeObject ReadyType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "puffinflow_c._core._Ready",
    .tp_basicsize = sizeof(ReadyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_as_async = &ready_async,
    .tp_iter = ready_await,
    .tp_iternext = ready_next,
    .tp_methods = ready_methods,
};

static PyObject *g_ready; /* the one instance */

PyObject *
ready(void)
{
    return Py_NewRef(g_ready);
}

/* ---- ManualClock ------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    pf_clock_t *clock;
} ClockObject;

static int
clock_init(ClockObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, ":ManualClock", kwlist)) {
        return -1;
    }
    if (self->clock != NULL) {
        return 0;
    }
    int rc = pf_clock_manual_new(&self->clock);
    if (rc != 0) {
        raise_code(rc);
        return -1;
    }
    return 0;
}

static void
clock_dealloc(ClockObject *self)
{
    pf_clock_free(self->clock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
clock_advance(ClockObject *self, PyObject *arg)
{
    double s;
    if (get_seconds(arg, "seconds", 0, &s) != 0) {
        return NULL;
    }
    pf_clock_manual_advance(self->clock, (int64_t)(s * 1e9 + 0.5));
    Py_RETURN_NONE;
}

static PyObject *
clock_now(ClockObject *self, PyObject *unused)
{
    (void)unused;
    return PyFloat_FromDouble(pf_clock_now(self->clock));
}

static PyMethodDef clock_methods[] = {
    {"advance", (PyCFunction)clock_advance, METH_O,
     "Move the clock forward by seconds."},
    {"now", (PyCFunction)clock_now, METH_NOARGS, "The time in seconds."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject ClockType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "puffinflow_c._core.ManualClock",
    .tp_doc = "A clock that moves only when advanced (for tests).",
    .tp_basicsize = sizeof(ClockObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)clock_init,
    .tp_dealloc = (destructor)clock_dealloc,
    .tp_methods = clock_methods,
};

/* The pf clock of an optional ManualClock argument (None = system). */
int
get_clock(PyObject *o, PyObject **keep, const pf_clock_t **out)
{
    if (o == NULL || o == Py_None) {
        *out = NULL;
        return 0;
    }
    if (!PyObject_TypeCheck(o, &ClockType)) {
        PyErr_SetString(PyExc_TypeError, "clock must be a ManualClock");
        return -1;
    }
    if (((ClockObject *)o)->clock == NULL) {
        PyErr_SetString(PyExc_ValueError, "clock is not initialised");
        return -1;
    }
    *keep = Py_NewRef(o);
    *out = ((ClockObject *)o)->clock;
    return 0;
}

/* ---- Breaker ---------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    pf_breaker_t *b;
    PyObject *expected; /* exception class or tuple of them */
    PyObject *clock;    /* ManualClock kept alive, or NULL */
    PyObject *dict;     /* instance dict for Python subclasses */
} BreakerObject;

typedef struct {
    PyObject_HEAD
    BreakerObject *owner;
    pf_permit_t permit;
    int entered;
} ProtectObject;

static PyTypeObject ProtectType;
static PyTypeObject BreakerType;

static int
breaker_init(BreakerObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name",
                             "failure_threshold",
                             "recovery_timeout",
                             "success_threshold",
                             "timeout",
                             "expected_exception",
                             "half_open_max_calls",
                             "clock",
                             NULL};
    PyObject *name, *ft, *rt, *st, *to, *exp, *hmax, *clk = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "UOOOOOO|O:_Breaker", kwlist,
                                     &name, &ft, &rt, &st, &to, &exp, &hmax,
                                     &clk)) {
        return -1;
    }
    if (self->b != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "breaker already initialised");
        return -1;
    }
    pf_breaker_config_t cfg;
    pf_breaker_config_init(&cfg);
    if (get_name(name, &cfg.name) != 0) {
        return -1;
    }
    if (get_uint(ft, "failure_threshold", 1, (1ul << 24) - 1,
                 &cfg.failure_threshold) != 0 ||
        get_seconds(rt, "recovery_timeout", 1, &cfg.recovery_timeout) != 0 ||
        get_uint(st, "success_threshold", 1, 1ul << 30,
                 &cfg.success_threshold) != 0 ||
        get_seconds(to, "timeout", 1, &cfg.timeout) != 0 ||
        get_uint(hmax, "half_open_max_calls", 0, 1ul << 30,
                 &cfg.half_open_max_calls) != 0) {
        return -1;
    }
    if (isinf(cfg.timeout)) {
        cfg.timeout = 0; /* no timeout */
    }
    /* expected_exception: a BaseException subclass or a tuple of them. */
    if (PyTuple_Check(exp)) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(exp); i++) {
            PyObject *e = PyTuple_GET_ITEM(exp, i);
            if (!PyExceptionClass_Check(e)) {
                PyErr_SetString(PyExc_TypeError,
                                "expected_exception must be an exception "
                                "class or a tuple of them");
                return -1;
            }
        }
    } else if (!PyExceptionClass_Check(exp)) {
        PyErr_SetString(PyExc_TypeError, "expected_exception must be an "
                                         "exception class or a tuple of them");
        return -1;
    }
    PyObject *keep = NULL;
    if (get_clock(clk, &keep, &cfg.clock) != 0) {
        return -1;
    }
    cfg.expected_errors = g_expected_results;
    cfg.expected_errors_len = 1;
    int rc = pf_breaker_new(&cfg, &self->b);
    if (rc != 0) {
        Py_XDECREF(keep);
        raise_code(rc);
        return -1;
    }
    self->expected = Py_NewRef(exp);
    self->clock = keep;
    return 0;
}

static int
breaker_traverse(BreakerObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->expected);
    Py_VISIT(self->clock);
    Py_VISIT(self->dict);
    return 0;
}

/* The clock stays to dealloc (the breaker reads it): a ManualClock holds
 * no references, and a Python subclass of it clears its own. */
static int
breaker_clear(BreakerObject *self)
{
    Py_CLEAR(self->expected);
    Py_CLEAR(self->dict);
    return 0;
}

static void
breaker_dealloc(BreakerObject *self)
{
    PyObject_GC_UnTrack(self);
    breaker_clear(self);
    pf_breaker_free(self->b);
    self->b = NULL;
    Py_CLEAR(self->clock); /* after the breaker that reads it */
    /* A static type: a heap subclass's type reference is dropped by
     * subtype_dealloc. */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define BREAKER_READY(self) REQUIRE_INIT((self)->b, "breaker")

static PyObject *
breaker_protect(BreakerObject *self, PyObject *unused)
{
    (void)unused;
    BREAKER_READY(self);
    ProtectObject *p = PyObject_GC_New(ProtectObject, &ProtectType);
    if (p == NULL) {
        return NULL;
    }
    p->owner = (BreakerObject *)Py_NewRef(self);
    memset(&p->permit, 0, sizeof p->permit);
    p->entered = 0;
    PyObject_GC_Track(p);
    return (PyObject *)p;
}

static PyObject *
breaker_force_open(BreakerObject *self, PyObject *unused)
{
    (void)unused;
    BREAKER_READY(self);
    pf_breaker_force_open(self->b);
    return ready();
}

static PyObject *
breaker_force_close(BreakerObject *self, PyObject *unused)
{
    (void)unused;
    BREAKER_READY(self);
    pf_breaker_force_close(self->b);
    return ready();
}

static PyObject *
breaker_reset(BreakerObject *self, PyObject *unused)
{
    (void)unused;
    BREAKER_READY(self);
    pf_breaker_reset(self->b);
    return ready();
}

static PyObject *
breaker_state_name(BreakerObject *self, PyObject *unused)
{
    (void)unused;
    BREAKER_READY(self);
    return PyUnicode_FromString(
        pf_breaker_state_name(pf_breaker_state(self->b)));
}

int
dict_set(PyObject *d, const char *k, PyObject *v)
{
    if (v == NULL) {
        return -1;
    }
    int rc = PyDict_SetItemString(d, k, v);
    Py_DECREF(v);
    return rc;
}

/* The library's own snapshot, as a dict of its field names. */
static PyObject *
breaker_raw_metrics(BreakerObject *self, PyObject *unused)
{
    (void)unused;
    BREAKER_READY(self);
    pf_breaker_metrics_t m;
    pf_breaker_metrics(self->b, &m);
    PyObject *d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
    double last = m.last_failure_ns < 0 ? 0.0 : (double)m.last_failure_ns / 1e9;
    if (dict_set(d, "name", PyUnicode_FromString(pf_breaker_name(self->b))) ||
        dict_set(d, "state", PyUnicode_FromString(pf_breaker_state_name(m.state))) ||
        dict_set(d, "failure_count", PyLong_FromUnsignedLong(m.consecutive_failures)) ||
        dict_set(d, "success_count", PyLong_FromUnsignedLong(m.half_open_successes)) ||
        dict_set(d, "last_failure_time", PyFloat_FromDouble(last)) ||
        dict_set(d, "calls", PyLong_FromUnsignedLongLong(m.calls)) ||
        dict_set(d, "successes", PyLong_FromUnsignedLongLong(m.successes)) ||
        dict_set(d, "failures", PyLong_FromUnsignedLongLong(m.failures)) ||
        dict_set(d, "ignored", PyLong_FromUnsignedLongLong(m.ignored)) ||
        dict_set(d, "rejected", PyLong_FromUnsignedLongLong(m.rejected)) ||
        dict_set(d, "timeouts", PyLong_FromUnsignedLongLong(m.timeouts)) ||
        dict_set(d, "times_opened", PyLong_FromUnsignedLongLong(m.times_opened)) ||
        dict_set(d, "half_open_in_flight", PyLong_FromUnsignedLong(m.half_open_in_flight)) ||
        dict_set(d, "forced_open", PyBool_FromLong(m.forced_open))) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

pf_breaker_t *
breaker_of(PyObject *o)
{
    if (!PyObject_TypeCheck(o, &BreakerType) ||
        ((BreakerObject *)o)->b == NULL) {
        PyErr_SetString(PyExc_TypeError, "expected a CircuitBreaker");
        return NULL;
    }
    return ((BreakerObject *)o)->b;
}

static PyMethodDef breaker_methods[] = {
    {"protect", (PyCFunction)breaker_protect, METH_NOARGS,
     "An async context manager: a permit on enter, the outcome on exit."},
    {"force_open", (PyCFunction)breaker_force_open, METH_NOARGS,
     "Open the breaker and hold it open (done at once; awaitable)."},
    {"force_close", (PyCFunction)breaker_force_close, METH_NOARGS,
     "Close the breaker, clearing its counts (done at once; awaitable)."},
    {"reset", (PyCFunction)breaker_reset, METH_NOARGS,
     "Back to a new breaker's state (done at once; awaitable)."},
    {"_state_name", (PyCFunction)breaker_state_name, METH_NOARGS, NULL},
    {"_raw_metrics", (PyCFunction)breaker_raw_metrics, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyTypeObject BreakerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "puffinflow_c._core._Breaker",
    .tp_basicsize = sizeof(BreakerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)breaker_init,
    .tp_dealloc = (destructor)breaker_dealloc,
    .tp_traverse = (traverseproc)breaker_traverse,
    .tp_clear = (inquiry)breaker_clear,
    .tp_methods = breaker_methods,
    .tp_dictoffset = offsetof(BreakerObject, dict),
};

/* ---- Protect: the per-call context manager ---------------------------- */

/* It holds its breaker, whose instance dict may hold it back (b.p =
 * b.protect()): a cycle the collector must see, so it is a GC type. */
static int
protect_traverse(ProtectObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->owner);
    return 0;
}

static int
protect_clear(ProtectObject *self)
{
    if (self->owner != NULL && self->owner->b != NULL) {
        /* Entered and never exited: give the permit back uncounted. */
        pf_breaker_release(self->owner->b, &self->permit);
    }
    Py_CLEAR(self->owner);
    return 0;
}

static void
protect_dealloc(ProtectObject *self)
{
    PyObject_GC_UnTrack(self);
    protect_clear(self);
    PyObject_GC_Del(self);
}

#define PROTECT_READY(self) REQUIRE_INIT((self)->owner, "protect() context")

static PyObject *
protect_aenter(ProtectObject *self, PyObject *unused)
{
    (void)unused;
    PROTECT_READY(self);
    if (self->entered) {
        PyErr_SetString(PyExc_RuntimeError,
                        "protect() context entered twice; call protect() "
                        "again for each call");
        return NULL;
    }
    BreakerObject *o = self->owner;
    if (pf_breaker_acquire(o->b, &self->permit) != 0) {
        PyErr_Format(g_open_error, "Circuit breaker '%s' is %s",
                     pf_breaker_name(o->b),
                     pf_breaker_state(o->b) == PF_BREAKER_HALF_OPEN
                         ? "HALF_OPEN (trial calls in flight)"
                         : "OPEN");
        return NULL;
    }
    self->entered = 1;
    return ready();
}

static PyObject *
protect_aexit(ProtectObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "__aexit__ takes 3 arguments");
        return NULL;
    }
    PROTECT_READY(self);
    if (!self->entered) {
        PyErr_SetString(PyExc_RuntimeError, "__aexit__ without __aenter__");
        return NULL;
    }
    self->entered = 0;
    BreakerObject *o = self->owner;
    PyObject *et = args[0];
    if (et == Py_None) {
        pf_breaker_record(o->b, &self->permit, 0);
        return ready();
    }
    if (PyErr_GivenExceptionMatches(et, g_cancelled)) {
        pf_breaker_release(o->b, &self->permit); /* never counted */
        return ready();
    }
    int res = PyErr_GivenExceptionMatches(et, o->expected) ? RES_FAILURE
                                                           : RES_IGNORED;
    pf_breaker_record(o->b, &self->permit, res);
    return ready();
}

static PyMethodDef protect_methods[] = {
    {"__aenter__", (PyCFunction)protect_aenter, METH_NOARGS, NULL},
    {"__aexit__", (PyCFunction)(void (*)(void))protect_aexit, METH_FASTCALL,
     NULL},
    {NULL, NULL, 0, NULL}};

static PyTypeObject ProtectType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "puffinflow_c._core._Protect",
    .tp_basicsize = sizeof(ProtectObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)protect_dealloc,
    .tp_traverse = (traverseproc)protect_traverse,
    .tp_clear = (inquiry)protect_clear,
    .tp_methods = protect_methods,
};

/* ---- Bulkhead --------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    pf_bulkhead_t *bh;
    double wait;     /* max_wait_duration in seconds; 0 = no limit */
    PyObject *clock; /* ManualClock kept alive, or NULL */
    PyObject *dict;
} BulkheadObject;

/* One isolate() call. Every flag is read and written with the GIL held
 * (the grant callback takes it), so none needs to be atomic. */
typedef struct {
    PyObject_HEAD
    BulkheadObject *owner;
    pf_bulkhead_ticket_t ticket;
    PyObject *loop;
    PyObject *fut;
    unsigned char used;      /* __aenter__ was called */
    unsigned char queued;    /* the ticket is (or may still be) queued */
    unsigned char holds;     /* owns a slot it has not given back */
    unsigned char abandoned; /* the caller gave up waiting */
    unsigned long thread;    /* the waiting loop's thread */
} IsolateObject;

static PyTypeObject IsolateType;

static int
bulkhead_init(BulkheadObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "max_concurrent_calls",
                             "max_wait_duration", "max_queue_size", "clock",
                             NULL};
    PyObject *name, *mc, *mw, *mq, *clk = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "UOOO|O:_Bulkhead", kwlist,
                                     &name, &mc, &mw, &mq, &clk)) {
        return -1;
    }
    if (self->bh != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bulkhead already initialised");
        return -1;
    }
    pf_bulkhead_config_t cfg;
    pf_bulkhead_config_init(&cfg);
    cfg.name = PyUnicode_AsUTF8(name);
    if (cfg.name == NULL) {
        return -1;
    }
    if (get_uint(mc, "max_concurrent_calls", 1, PF_BULKHEAD_MAX_LIMIT,
                 &cfg.max_concurrent_calls) != 0 ||
        get_seconds(mw, "max_wait_duration", 1, &cfg.max_wait_duration) != 0 ||
        get_uint(mq, "max_queue_size", 0, 1ul << 30, &cfg.max_queue_size) !=
            0) {
        return -1;
    }
    PyObject *keep = NULL;
    if (get_clock(clk, &keep, &cfg.clock) != 0) {
        return -1;
    }
    int rc = pf_bulkhead_new(&cfg, &self->bh);
    if (rc != 0) {
        Py_XDECREF(keep);
        raise_code(rc);
        return -1;
    }
    self->wait = isinf(cfg.max_wait_duration) ? 0 : cfg.max_wait_duration;
    self->clock = keep;
    return 0;
}

static int
bulkhead_traverse(BulkheadObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->clock);
    Py_VISIT(self->dict);
    return 0;
}

/* The clock stays to dealloc, as the breaker's. */
static int
bulkhead_clear(BulkheadObject *self)
{
    Py_CLEAR(self->dict);
    return 0;
}

static void
bulkhead_dealloc(BulkheadObject *self)
{
    PyObject_GC_UnTrack(self);
    bulkhead_clear(self);
    /* Every isolate() holds a reference: nobody is inside or queued. */
    pf_bulkhead_free(self->bh);
    self->bh = NULL;
    Py_CLEAR(self->clock);
    /* A static type: a heap subclass's type reference is dropped by
     * subtype_dealloc. */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define BULKHEAD_READY(self) REQUIRE_INIT((self)->bh, "bulkhead")

static PyObject *
bulkhead_isolate(BulkheadObject *self, PyObject *unused)
{
    (void)unused;
    BULKHEAD_READY(self);
    IsolateObject *p = PyObject_GC_New(IsolateObject, &IsolateType);
    if (p == NULL) {
        return NULL;
    }
    p->owner = (BulkheadObject *)Py_NewRef(self);
    p->loop = NULL;
    p->fut = NULL;
    p->used = p->queued = p->holds = p->abandoned = 0;
    /* Not tracked by the collector until it holds a loop and a future. */
    return (PyObject *)p;
}

static PyObject *
bulkhead_raw_metrics(BulkheadObject *self, PyObject *unused)
{
    (void)unused;
    BULKHEAD_READY(self);
    pf_bulkhead_metrics_t m;
    pf_bulkhead_metrics(self->bh, &m);
    PyObject *d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
    if (dict_set(d, "name", PyUnicode_FromString(pf_bulkhead_name(self->bh))) ||
        dict_set(d, "max_concurrent", PyLong_FromUnsignedLong(m.max_concurrent)) ||
        dict_set(d, "active_tasks", PyLong_FromUnsignedLong(m.in_use)) ||
        dict_set(d, "queue_size", PyLong_FromUnsignedLong(m.waiting)) ||
        dict_set(d, "available_slots", PyLong_FromUnsignedLong(m.available)) ||
        dict_set(d, "max_queue_size", PyLong_FromUnsignedLong(m.max_queue_size)) ||
        dict_set(d, "accepted", PyLong_FromUnsignedLongLong(m.accepted)) ||
        dict_set(d, "rejected_full", PyLong_FromUnsignedLongLong(m.rejected_full)) ||
        dict_set(d, "rejected_timeout", PyLong_FromUnsignedLongLong(m.rejected_timeout)) ||
        dict_set(d, "cancelled", PyLong_FromUnsignedLongLong(m.cancelled)) ||
        dict_set(d, "peak_in_use", PyLong_FromUnsignedLong(m.peak_in_use))) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

/* Take a slot without waiting (True) or refuse (False): for code that is
 * not a coroutine. */
static PyObject *
bulkhead_try_acquire(BulkheadObject *self, PyObject *unused)
{
    (void)unused;
    BULKHEAD_READY(self);
    return PyBool_FromLong(pf_bulkhead_try_enter(self->bh) == 0);
}

static PyObject *
bulkhead_release(BulkheadObject *self, PyObject *unused)
{
    (void)unused;
    BULKHEAD_READY(self);
    pf_bulkhead_leave(self->bh);
    Py_RETURN_NONE;
}

static PyMethodDef bulkhead_methods[] = {
    {"isolate", (PyCFunction)bulkhead_isolate, METH_NOARGS,
     "An async context manager holding one slot of the bulkhead."},
    {"try_acquire", (PyCFunction)bulkhead_try_acquire, METH_NOARGS,
     "Take a slot if one is free and nobody waits; True when taken."},
    {"release", (PyCFunction)bulkhead_release, METH_NOARGS,
     "Give back a slot taken by try_acquire (from any thread)."},
    {"_raw_metrics", (PyCFunction)bulkhead_raw_metrics, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyTypeObject BulkheadType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "puffinflow_c._core._Bulkhead",
    .tp_basicsize = sizeof(BulkheadObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)bulkhead_init,
    .tp_dealloc = (destructor)bulkhead_dealloc,
    .tp_traverse = (traverseproc)bulkhead_traverse,
    .tp_clear = (inquiry)bulkhead_clear,
    .tp_methods = bulkhead_methods,
    .tp_dictoffset = offsetof(BulkheadObject, dict),
};

/* ---- Isolate: the per-call context manager ----------------------------- */

static void
isolate_give_back(IsolateObject *self)
{
    if (self->holds) {
        self->holds = 0;
        pf_bulkhead_leave(self->owner->bh);
    }
}

/* The ticket's grant: on the thread that freed the slot, maybe without the
 * GIL. The ticket holds a reference to self, dropped here. */
static void
isolate_granted(pf_bulkhead_ticket_t *t, void *arg)
{
    (void)t;
    IsolateObject *self = arg;
    PyGILState_STATE g = PyGILState_Ensure();
    self->queued = 0;
    self->holds = 1;
    if (self->abandoned) {
        isolate_give_back(self); /* hands it on after we return */
    } else if (self->fut != NULL) {
        /* Freed on the waiter's own loop thread (another task's exit, the
         * usual case): resolve the future now, which schedules the waiter;
         * from another thread: through the loop, which wakes it. */
        PyObject *r =
            PyThread_get_thread_ident() == self->thread
                ? PyObject_CallOneArg(g_grant, self->fut)
                : PyObject_CallMethod(self->loop, "call_soon_threadsafe",
                                      "OO", g_grant, self->fut);
        if (r == NULL) {
            /* The loop is closed: nobody will wake; give the slot back. */
            PyErr_WriteUnraisable((PyObject *)self);
            self->abandoned = 1;
            isolate_give_back(self);
        }
        Py_XDECREF(r);
    }
    Py_DECREF(self);
    PyGILState_Release(g);
}

static int
isolate_traverse(IsolateObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->owner);
    Py_VISIT(self->loop);
    Py_VISIT(self->fut);
    return 0;
}

/* The owner stays to dealloc, which gives a held slot back to it; a cycle
 * through it is broken by the bulkhead's own clear (its dict). */
static int
isolate_clear(IsolateObject *self)
{
    Py_CLEAR(self->loop);
    Py_CLEAR(self->fut);
    return 0;
}

static void
isolate_dealloc(IsolateObject *self)
{
    PyObject_GC_UnTrack(self);
    /* Never queued here: a queued ticket holds a reference. */
    isolate_give_back(self);
    isolate_clear(self);
    Py_XDECREF(self->owner);
    PyObject_GC_Del(self);
}

static PyObject *
full_error(IsolateObject *self, const char *why)
{
    PyErr_Format(g_full_error, "Bulkhead '%s' %s",
                 pf_bulkhead_name(self->owner->bh), why);
    return NULL;
}

static PyObject *wait_new(IsolateObject *cm);

static PyObject *
isolate_aenter(IsolateObject *self, PyObject *unused)
{
    (void)unused;
    if (self->used) {
        PyErr_SetString(PyExc_RuntimeError,
                        "isolate() context entered twice; call isolate() "
                        "again for each call");
        return NULL;
    }
    self->used = 1;
    pf_bulkhead_t *bh = self->owner->bh;
    bool entered = false;
    /* The ticket's reference, taken first: the grant may come (on another
     * thread, waiting for the GIL) as soon as the ticket is queued. */
    Py_INCREF(self);
    int rc = pf_bulkhead_enqueue(bh, &self->ticket, PF_PRIORITY_NORMAL,
                                 isolate_granted, self, &entered);
    if (rc != 0 || entered) {
        Py_DECREF(self);
        if (rc == PF_EFULL) {
            return full_error(self, "is full");
        }
        if (rc != 0) {
            return raise_code(rc);
        }
        self->holds = 1;
        return ready();
    }
    self->queued = 1;
    PyObject *loop = PyObject_CallNoArgs(g_get_loop);
    PyObject *fut = loop ? PyObject_CallMethod(loop, "create_future", NULL)
                         : NULL;
    if (fut == NULL) {
        /* No running loop: leave the queue (or the slot just granted). */
        Py_XDECREF(loop);
        self->abandoned = 1;
        if (self->queued &&
            pf_bulkhead_cancel(bh, &self->ticket, PF_ECANCELED)) {
            self->queued = 0;
            Py_DECREF(self);
        }
        isolate_give_back(self);
        return NULL;
    }
    if (self->holds) {
        /* Granted while we made the future: no need to wait. */
        Py_DECREF(loop);
        Py_DECREF(fut);
        return ready();
    }
    self->loop = loop;
    self->fut = fut;
    self->thread = PyThread_get_thread_ident();
    PyObject_GC_Track(self);
    PyObject *w = wait_new(self);
    if (w == NULL) {
        self->abandoned = 1;
        if (self->queued &&
            pf_bulkhead_cancel(bh, &self->ticket, PF_ECANCELED)) {
            self->queued = 0;
            Py_DECREF(self);
        }
        isolate_give_back(self);
        isolate_clear(self);
    }
    return w;
}

static PyObject *
isolate_aexit(IsolateObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "__aexit__ takes 3 arguments");
        return NULL;
    }
    if (!self->holds) {
        PyErr_SetString(PyExc_RuntimeError, "__aexit__ without a slot");
        return NULL;
    }
    isolate_give_back(self);
    return ready();
}

/* The wait ran past max_wait_duration (a timer of the waiting loop). */
static PyObject *
isolate_expire(IsolateObject *self, PyObject *unused)
{
    (void)unused;
    if (!self->queued || self->holds ||
        !pf_bulkhead_cancel(self->owner->bh, &self->ticket, PF_EFULL)) {
        Py_RETURN_NONE; /* granted meanwhile: the grant wakes the waiter */
    }
    self->queued = 0;
    self->abandoned = 1;
    PyObject *fut = self->fut ? Py_NewRef(self->fut) : NULL;
    Py_DECREF(self); /* the ticket's reference; the caller holds another */
    if (fut == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *done = PyObject_CallMethod(fut, "done", NULL);
    int is_done = done ? PyObject_IsTrue(done) : -1;
    Py_XDECREF(done);
    PyObject *r = NULL;
    if (is_done == 0) {
        PyObject *exc = PyObject_CallFunction(
            g_full_error, "N",
            PyUnicode_FromFormat("Bulkhead '%s' wait timed out",
                                 pf_bulkhead_name(self->owner->bh)));
        if (exc != NULL) {
            r = PyObject_CallMethod(fut, "set_exception", "O", exc);
            Py_DECREF(exc);
        }
    } else if (is_done == 1) {
        r = Py_NewRef(Py_None);
    }
    Py_DECREF(fut);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_NONE;
}

/* The waiter gave up (cancelled, or its loop failed): leave the queue, or
 * give back a slot granted meanwhile. Safe to call more than once. */
static PyObject *
isolate_abandon(IsolateObject *self, PyObject *unused)
{
    (void)unused;
    self->abandoned = 1;
    if (self->queued &&
        pf_bulkhead_cancel(self->owner->bh, &self->ticket, PF_ECANCELED)) {
        self->queued = 0;
        Py_DECREF(self); /* the ticket's reference; the caller holds another */
    }
    /* Still queued here means the grant is on its way on another thread: it
     * sees abandoned and gives the slot back itself. */
    isolate_give_back(self);
    Py_RETURN_NONE;
}

/* The wait is over: drop the loop and the future. */
static PyObject *
isolate_settle(IsolateObject *self, PyObject *unused)
{
    (void)unused;
    isolate_clear(self);
    Py_RETURN_NONE;
}

/* True while the ticket waits in the queue. */
static PyObject *
isolate_waiting(IsolateObject *self, PyObject *unused)
{
    (void)unused;
    return PyBool_FromLong(self->queued && !self->holds);
}

static PyMethodDef isolate_methods[] = {
    {"__aenter__", (PyCFunction)isolate_aenter, METH_NOARGS, NULL},
    {"__aexit__", (PyCFunction)(void (*)(void))isolate_aexit, METH_FASTCALL,
     NULL},
    {"_expire", (PyCFunction)isolate_expire, METH_NOARGS, NULL},
    {"_abandon", (PyCFunction)isolate_abandon, METH_NOARGS, NULL},
    {"_settle", (PyCFunction)isolate_settle, METH_NOARGS, NULL},
    {"_waiting", (PyCFunction)isolate_waiting, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyTypeObject IsolateType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "puffinflow_c._core._Isolate",
    .tp_basicsize = sizeof(IsolateObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)isolate_dealloc,
    .tp_traverse = (traverseproc)isolate_traverse,
    .tp_clear = (inquiry)isolate_clear,
    .tp_methods = isolate_methods,
};

/* ---- Wait: the awaitable of a queued isolate() ------------------------- */

/* What `await` runs while a queued isolate() waits: it delegates to the
 * asyncio future's own iterator (so the task waits on the future), and
 * when the wait ends it cancels the max_wait_duration timer and drops the
 * loop and future; when it ends by an exception (the task cancelled, the
 * wait timed out) it first leaves the queue, or gives back a slot granted
 * meanwhile, so no outcome leaks a slot. */
typedef struct {
    PyObject_HEAD
    IsolateObject *cm;
    PyObject *it;    /* fut.__await__() */
    PyObject *timer; /* a timer handle to cancel at the end, or NULL */
    int done;
} WaitObject;

static PyTypeObject WaitType;

static void
wait_finish(WaitObject *self, int failed)
{
    if (self->done) {
        return;
    }
    self->done = 1;
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    if (failed) {
        Py_XDECREF(isolate_abandon(self->cm, NULL));
    }
    if (self->timer != NULL) {
        PyObject *r = PyObject_CallMethod(self->timer, "cancel", NULL);
        if (r == NULL) {
            PyErr_WriteUnraisable(self->timer);
        }
        Py_XDECREF(r);
        Py_CLEAR(self->timer);
    }
    isolate_clear(self->cm);
    PyErr_Restore(et, ev, etb);
}

static PyObject *
wait_new(IsolateObject *cm)
{
    WaitObject *w = PyObject_GC_New(WaitObject, &WaitType);
    if (w == NULL) {
        return NULL;
    }
    w->cm = (IsolateObject *)Py_NewRef(cm);
    w->it = NULL;
    w->timer = NULL;
    w->done = 0;
    PyObject_GC_Track(w);
    w->it = PyObject_CallMethod(cm->fut, "__await__", NULL);
    if (w->it == NULL) {
        goto fail;
    }
    if (cm->owner->wait > 0) {
        /* max_wait_duration: one timer of the loop per bulkhead serves
         * every waiter (reliability._expire_later). */
        PyObject *r = PyObject_CallFunctionObjArgs(
            g_expire_later, (PyObject *)cm->owner, cm->loop, (PyObject *)cm,
            NULL);
        if (r == NULL) {
            goto fail;
        }
        Py_DECREF(r);
    }
    return (PyObject *)w;
fail:
    w->done = 1; /* the caller cleans up the isolate() */
    Py_DECREF(w);
    return NULL;
}

static PyObject *
wait_iternext(WaitObject *self)
{
    if (self->done) {
        PyErr_SetString(PyExc_RuntimeError, "isolate() wait already over");
        return NULL;
    }
    PyObject *r = Py_TYPE(self->it)->tp_iternext(self->it);
    if (r != NULL) {
        return r; /* the future, to the task */
    }
    if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_StopIteration)) {
        PyErr_Clear();
        wait_finish(self, 0); /* granted */
        return NULL;          /* StopIteration: the result is None */
    }
    wait_finish(self, 1);
    return NULL;
}

static PyObject *
wait_send(WaitObject *self, PyObject *arg)
{
    if (arg != Py_None) {
        PyErr_SetString(PyExc_TypeError,
                        "can't send non-None value to an isolate() wait");
        return NULL;
    }
    PyObject *r = wait_iternext(self);
    if (r == NULL && !PyErr_Occurred()) {
        PyErr_SetNone(PyExc_StopIteration);
    }
    return r;
}

static PyObject *
wait_throw(WaitObject *self, PyObject *args)
{
    /* Leave the queue (or give the slot back) before the exception goes
     * on: the future's iterator raises it again. */
    wait_finish(self, 1);
    PyObject *m = PyObject_GetAttrString(self->it, "throw");
    if (m == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_Call(m, args, NULL);
    Py_DECREF(m);
    return r;
}

static PyObject *
wait_close(WaitObject *self, PyObject *unused)
{
    (void)unused;
    wait_finish(self, 1);
    Py_RETURN_NONE;
}

static PyObject *
wait_await(PyObject *self)
{
    return Py_NewRef(self);
}

static int
wait_traverse(WaitObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->cm);
    Py_VISIT(self->it);
    Py_VISIT(self->timer);
    return 0;
}

static int
wait_clear(WaitObject *self)
{
    if (self->cm != NULL) {
        wait_finish(self, 1);
    }
    Py_CLEAR(self->it);
    Py_CLEAR(self->timer);
    Py_CLEAR(self->cm);
    return 0;
}

static void
wait_dealloc(WaitObject *self)
{
    PyObject_GC_UnTrack(self);
    wait_clear(self);
    PyObject_GC_Del(self);
}

static PyMethodDef wait_methods[] = {
    {"send", (PyCFunction)wait_send, METH_O, NULL},
    {"throw", (PyCFunction)wait_throw, METH_VARARGS, NULL},
    {"close", (PyCFunction)wait_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyAsyncMethods wait_async = {.am_await = wait_await};

static PyTypeObject WaitType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "puffinflow_c._core._Wait",
    .tp_basicsize = sizeof(WaitObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)wait_dealloc,
    .tp_traverse = (traverseproc)wait_traverse,
    .tp_clear = (inquiry)wait_clear,
    .tp_as_async = &wait_async,
    .tp_iter = wait_await,
    .tp_iternext = (iternextfunc)wait_iternext,
    .tp_methods = wait_methods,
};

#define BULKHEAD_TYPES &BulkheadType, &IsolateType, &WaitType
#define BULKHEAD_ADD(m)                                                      \
    (PyModule_AddObjectRef((m), "_Bulkhead", (PyObject *)&BulkheadType) < 0)

/* ---- exponential_backoff ---------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15u;

static PyObject *
backoff(PyObject *mod, PyObject *args, PyObject *kw)
{
    (void)mod;
    static char *kwlist[] = {"attempt", "base_delay", "max_delay",
                             "multiplier", "jitter", "seed", NULL};
    PyObject *att, *base = NULL, *maxd = NULL, *mult = NULL, *seed = Py_None;
    int jitter = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOOpO:exponential_backoff",
                                     kwlist, &att, &base, &maxd, &mult,
                                     &jitter, &seed)) {
        return NULL;
    }
    unsigned attempt;
    pf_backoff_t b;
    pf_backoff_init(&b);
    b.jitter = jitter ? PF_JITTER_EQUAL : PF_JITTER_NONE;
    if (get_uint(att, "attempt", 0, 1ul << 30, &attempt) != 0 ||
        (base && get_seconds(base, "base_delay", 0, &b.initial_delay) != 0) ||
        (maxd && get_seconds(maxd, "max_delay", 1, &b.max_delay) != 0) ||
        (mult && get_seconds(mult, "multiplier", 0, &b.multiplier) != 0)) {
        return NULL;
    }
    if (b.multiplier < 1) {
        PyErr_SetString(PyExc_ValueError, "multiplier must be >= 1");
        return NULL;
    }
    if (b.max_delay < b.initial_delay) {
        PyErr_SetString(PyExc_ValueError, "max_delay must be >= base_delay");
        return NULL;
    }
    uint64_t st;
    uint64_t *rng = &g_rng; /* serialised by the GIL */
    if (seed != Py_None) {
        if (!PyLong_Check(seed) || PyBool_Check(seed)) {
            PyErr_SetString(PyExc_TypeError, "seed must be an int or None");
            return NULL;
        }
        st = (uint64_t)PyLong_AsUnsignedLongLongMask(seed);
        if (PyErr_Occurred()) {
            return NULL;
        }
        rng = &st;
    }
    return PyFloat_FromDouble(pf_exponential_backoff(&b, attempt, rng));
}

/* ---- module ----------------------------------------------------------- */

static PyObject *
setup(PyObject *mod, PyObject *args, PyObject *kw)
{
    (void)mod;
    static char *kwlist[] = {"open_error", "full_error", "cancelled",
                             "get_running_loop", "grant", "expire_later",
                             NULL};
    PyObject *a, *b, *c, *d, *f, *g;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOO:_setup", kwlist, &a,
                                     &b, &c, &d, &f, &g)) {
        return NULL;
    }
    if (!PyExceptionClass_Check(a) || !PyExceptionClass_Check(b) ||
        !PyExceptionClass_Check(c) || !PyCallable_Check(d) ||
        !PyCallable_Check(f) || !PyCallable_Check(g)) {
        PyErr_SetString(PyExc_TypeError, "_setup: bad argument");
        return NULL;
    }
    Py_XSETREF(g_open_error, Py_NewRef(a));
    Py_XSETREF(g_full_error, Py_NewRef(b));
    Py_XSETREF(g_cancelled, Py_NewRef(c));
    Py_XSETREF(g_get_loop, Py_NewRef(d));
    Py_XSETREF(g_grant, Py_NewRef(f));
    Py_XSETREF(g_expire_later, Py_NewRef(g));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"_setup", (PyCFunction)(void (*)(void))setup,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"exponential_backoff", (PyCFunction)(void (*)(void))backoff,
     METH_VARARGS | METH_KEYWORDS,
     "exponential_backoff(attempt, base_delay=1.0, max_delay=60.0, "
     "multiplier=2.0, jitter=True, seed=None) -> seconds"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "puffinflow_c._core",
    "The C core of puffinflow_c.reliability.", -1, module_methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC
PyInit__core(void)
{
    PyTypeObject *types[] = {&ReadyType, &ClockType, &BreakerType,
                             &ProtectType, BULKHEAD_TYPES};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (PyType_Ready(types[i]) < 0) {
            return NULL;
        }
    }
    PyObject *m = PyModule_Create(&core_module);
    if (m == NULL) {
        return NULL;
    }
    g_ready = PyObject_New(PyObject, &ReadyType);
    if (g_ready == NULL ||
        PyModule_AddObjectRef(m, "ManualClock", (PyObject *)&ClockType) < 0 ||
        PyModule_AddObjectRef(m, "_Breaker", (PyObject *)&BreakerType) < 0 ||
        BULKHEAD_ADD(m) || extras_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
