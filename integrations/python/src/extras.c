/* puffinflow_c._core, continued: the leak detector and the degradation
 * manager, wrapped for puffinflow_c.reliability's ResourceLeakDetector and
 * GracefulDegradation.
 *
 * Neither calls Python from a thread of its own: the leak detector's
 * monitoring thread samples /proc (a Python sample function is for check()
 * only), and the degradation manager is updated by the caller (its
 * background sampler is not exposed), so a Python source runs on the
 * calling thread with the GIL held. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "puffinflow/degrade.h"
#include "puffinflow/error.h"
#include "puffinflow/leak.h"

#include "core.h"

/* ---- helpers ---------------------------------------------------------- */

/* A number > 0, not NaN (inf allowed when inf_ok). */
static int
get_positive(PyObject *o, const char *name, int inf_ok, double *out)
{
    if (get_seconds(o, name, inf_ok, out) != 0) {
        return -1;
    }
    if (*out <= 0) {
        PyErr_Format(PyExc_ValueError, "%s must be > 0", name);
        return -1;
    }
    return 0;
}

static PyObject *
seconds_of_ns(int64_t ns)
{
    return PyFloat_FromDouble((double)ns / 1e9);
}

/* ---- Leak: the leak detector ------------------------------------------ */

typedef struct {
    PyObject_HEAD
    pf_leak_detector_t *d;
    PyObject *clock;  /* ManualClock kept alive, or NULL */
    PyObject *sample; /* a Python sample function, or NULL */
    PyObject *dict;
} LeakObject;

/* The fields a Python sample function may give, by name. */
static const struct {
    const char *name;
    size_t off;
} g_sample_fields[] = {
    {"rss_bytes", offsetof(pf_leak_sample_t, rss_bytes)},
    {"memory_limit_bytes", offsetof(pf_leak_sample_t, memory_limit_bytes)},
    {"threads", offsetof(pf_leak_sample_t, threads)},
    {"open_fds", offsetof(pf_leak_sample_t, open_fds)},
    {"fd_limit", offsetof(pf_leak_sample_t, fd_limit)},
    {"sockets", offsetof(pf_leak_sample_t, sockets)},
    {"tcp", offsetof(pf_leak_sample_t, tcp)},
    {"udp", offsetof(pf_leak_sample_t, udp)},
    {"unix_sockets", offsetof(pf_leak_sample_t, unix_sockets)},
    {"other_sockets", offsetof(pf_leak_sample_t, other_sockets)},
};

/* The detector's sampler when a Python function is given: called by
 * pf_leak_detector_check on the thread of check(), which holds the GIL.
 * An exception stays set for check() to raise. */
static int
leak_sample_py(int pid, pf_leak_sample_t *out, void *arg)
{
    (void)pid;
    LeakObject *self = arg;
    if (PyErr_Occurred()) {
        return PF_EINVAL;
    }
    PyObject *r = PyObject_CallNoArgs(self->sample);
    if (r == NULL) {
        return PF_EINVAL;
    }
    if (!PyDict_Check(r)) {
        PyErr_Format(PyExc_TypeError,
                     "the sample function must return a dict, not %.100s",
                     Py_TYPE(r)->tp_name);
        Py_DECREF(r);
        return PF_EINVAL;
    }
    for (size_t i = 0; i < sizeof g_sample_fields / sizeof g_sample_fields[0];
         i++) {
        PyObject *v = PyDict_GetItemString(r, g_sample_fields[i].name);
        if (v == NULL) {
            continue;
        }
        if (!PyLong_Check(v) || PyBool_Check(v)) {
            PyErr_Format(PyExc_TypeError, "sample field %s must be an int",
                         g_sample_fields[i].name);
            Py_DECREF(r);
            return PF_EINVAL;
        }
        long long x = PyLong_AsLongLong(v);
        if (x == -1 && PyErr_Occurred()) {
            Py_DECREF(r);
            return PF_EINVAL;
        }
        memcpy((char *)out + g_sample_fields[i].off, &(int64_t){x},
               sizeof(int64_t));
    }
    Py_DECREF(r);
    return 0;
}

static int
leak_init(LeakObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name",
                             "check_interval",
                             "memory_threshold",
                             "file_handle_threshold",
                             "connection_threshold",
                             "leak_threshold",
                             "leak_history",
                             "clock",
                             "sample",
                             NULL};
    PyObject *name, *ci, *mt, *fh, *ct, *lt, *lh, *clk = Py_None,
                                                  *sample = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "UOOOOOO|OO:_Leak", kwlist,
                                     &name, &ci, &mt, &fh, &ct, &lt, &lh, &clk,
                                     &sample)) {
        return -1;
    }
    if (self->d != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "detector already initialised");
        return -1;
    }
    pf_leak_config_t cfg;
    pf_leak_config_init(&cfg);
    if (get_name(name, &cfg.name) != 0) {
        return -1;
    }
    if (get_positive(ci, "check_interval", 1, &cfg.check_interval) != 0 ||
        get_positive(mt, "memory_threshold", 0, &cfg.memory_threshold) !=
            0 ||
        get_uint(fh, "file_handle_threshold", 1, UINT32_MAX,
                 &cfg.file_handle_threshold) != 0 ||
        get_uint(ct, "connection_threshold", 1, UINT32_MAX,
                 &cfg.connection_threshold) != 0 ||
        get_positive(lt, "leak_threshold_seconds", 1, &cfg.leak_threshold) !=
            0 ||
        get_uint(lh, "leak_history", 0, 1000000, &cfg.leak_history) != 0) {
        return -1;
    }
    if (cfg.memory_threshold > 1) {
        PyErr_SetString(PyExc_ValueError,
                        "memory_threshold must be in (0, 1]");
        return -1;
    }
    if (sample != Py_None && !PyCallable_Check(sample)) {
        PyErr_SetString(PyExc_TypeError, "sample must be callable or None");
        return -1;
    }
    PyObject *keep = NULL;
    if (get_clock(clk, &keep, &cfg.clock) != 0) {
        return -1;
    }
    if (sample != Py_None) {
        cfg.sample = leak_sample_py;
        cfg.sample_arg = self;
        Py_XSETREF(self->sample, Py_NewRef(sample)); /* before any sample */
    }
    int rc = pf_leak_detector_new(&cfg, &self->d);
    if (rc != 0) {
        Py_XDECREF(keep);
        Py_CLEAR(self->sample);
        raise_code(rc);
        return -1;
    }
    self->clock = keep;
    return 0;
}

static int
leak_traverse(LeakObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->clock);
    Py_VISIT(self->sample);
    Py_VISIT(self->dict);
    return 0;
}

/* Drops everything the object holds, the detector first (its thread reads
 * the clock; check() calls the sample function): a sample function that
 * refers back to the detector (a bound method of it, say) makes a cycle
 * only this can break. The object is then "not initialised". */
static int
leak_clear(LeakObject *self)
{
    if (self->d != NULL) {
        pf_leak_detector_t *d = self->d;
        self->d = NULL;
        /* Stops the monitoring thread (which never takes the GIL). */
        Py_BEGIN_ALLOW_THREADS
        pf_leak_detector_free(d);
        Py_END_ALLOW_THREADS
    }
    Py_CLEAR(self->sample);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->dict);
    return 0;
}

static void
leak_dealloc(LeakObject *self)
{
    PyObject_GC_UnTrack(self);
    leak_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define LEAK_READY(self) REQUIRE_INIT((self)->d, "detector")

/* _track(agent, state, cpu_units, memory_mb, io_weight, network_weight,
 *        gpu_units) */
static PyObject *
leak_track(LeakObject *self, PyObject *args)
{
    LEAK_READY(self);
    const char *agent, *state;
    pf_leak_resources_t r;
    if (!PyArg_ParseTuple(args, "ssddddd:_track", &agent, &state,
                          &r.cpu_units, &r.memory_mb, &r.io_weight,
                          &r.network_weight, &r.gpu_units)) {
        return NULL;
    }
    int rc = pf_leak_detector_track_allocation(self->d, agent, state, &r);
    if (rc != 0) {
        return raise_code(rc);
    }
    Py_RETURN_NONE;
}

/* _release(agent, state) -> True when something was held. */
static PyObject *
leak_release(LeakObject *self, PyObject *args)
{
    LEAK_READY(self);
    const char *agent, *state;
    if (!PyArg_ParseTuple(args, "ss:_release", &agent, &state)) {
        return NULL;
    }
    int rc = pf_leak_detector_track_release(self->d, agent, state);
    if (rc != 0 && rc != PF_ENOTFOUND) {
        return raise_code(rc);
    }
    return PyBool_FromLong(rc == 0);
}

/* A leak as (agent, state, allocated_at, held_for_seconds,
 * leak_threshold_seconds, instance). */
static PyObject *
leak_tuple(const pf_leak_t *l)
{
    return Py_BuildValue("(ssdddK)", l->agent, l->state,
                         (double)l->allocated_ns / 1e9, l->held_seconds,
                         l->threshold_seconds,
                         (unsigned long long)l->instance);
}

static PyObject *
leak_list(const pf_leak_t *v, size_t n)
{
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (list == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        PyObject *t = leak_tuple(&v[i]);
        if (t == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    return list;
}

static PyObject *
sample_dict(const pf_leak_sample_t *s)
{
    PyObject *d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof g_sample_fields / sizeof g_sample_fields[0];
         i++) {
        int64_t v;
        memcpy(&v, (const char *)s + g_sample_fields[i].off, sizeof v);
        if (dict_set(d, g_sample_fields[i].name, PyLong_FromLongLong(v))) {
            Py_DECREF(d);
            return NULL;
        }
    }
    PyObject *tcp = PyDict_New();
    if (dict_set(d, "at", seconds_of_ns(s->at_ns)) ||
        dict_set(d, "memory_fraction", PyFloat_FromDouble(s->memory_fraction)) ||
        dict_set(d, "connections", PyLong_FromLongLong(s->connections)) ||
        tcp == NULL) {
        Py_XDECREF(tcp);
        Py_DECREF(d);
        return NULL;
    }
    for (int i = 1; i < PF_LEAK_TCP_STATES; i++) {
        if (s->tcp_by_state[i] != 0 &&
            dict_set(tcp, pf_leak_tcp_state_name(i),
                     PyLong_FromLongLong(s->tcp_by_state[i]))) {
            Py_DECREF(tcp);
            Py_DECREF(d);
            return NULL;
        }
    }
    if (dict_set(d, "tcp_by_state", tcp)) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

static PyObject *
alerting_dict(const bool *alerting)
{
    PyObject *d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
    for (int k = 0; k < PF_LEAK_ALERT_KINDS; k++) {
        if (dict_set(d, pf_leak_alert_kind_name((pf_leak_alert_kind_t)k),
                     PyBool_FromLong(alerting[k]))) {
            Py_DECREF(d);
            return NULL;
        }
    }
    return d;
}

/* _check() -> dict: leaks (tuples), leaks_by_agent, sample (None when it
 * failed), sample_error, alerting, memory_slope, fd_slope. */
static PyObject *
leak_check(LeakObject *self, PyObject *unused)
{
    (void)unused;
    LEAK_READY(self);
    pf_leak_report_t r;
    int rc = pf_leak_detector_check(self->d, &r);
    if (rc != 0) {
        return raise_code(rc);
    }
    if (PyErr_Occurred()) { /* raised by a Python sample function */
        pf_leak_report_free(&r);
        return NULL;
    }
    PyObject *d = PyDict_New();
    PyObject *by = PyDict_New();
    if (d == NULL || by == NULL) {
        goto fail;
    }
    for (size_t i = 0; i < r.by_agent_len; i++) {
        if (dict_set(by, r.by_agent[i].agent,
                     PyLong_FromSize_t(r.by_agent[i].leaks))) {
            goto fail;
        }
    }
    if (dict_set(d, "leaks", leak_list(r.leaks, r.leaks_len)) ||
        dict_set(d, "leaks_by_agent", Py_NewRef(by)) ||
        dict_set(d, "sample", r.sample_error != 0 ? Py_NewRef(Py_None)
                                                  : sample_dict(&r.sample)) ||
        dict_set(d, "sample_error",
                 r.sample_error != 0
                     ? PyUnicode_FromString(pf_strerror(r.sample_error))
                     : Py_NewRef(Py_None)) ||
        dict_set(d, "alerting", alerting_dict(r.alerting)) ||
        dict_set(d, "memory_slope", PyFloat_FromDouble(r.memory_slope)) ||
        dict_set(d, "fd_slope", PyFloat_FromDouble(r.fd_slope))) {
        goto fail;
    }
    Py_DECREF(by);
    pf_leak_report_free(&r);
    return d;
fail:
    Py_XDECREF(by);
    Py_XDECREF(d);
    pf_leak_report_free(&r);
    return NULL;
}

static PyObject *
leak_history(LeakObject *self, PyObject *unused)
{
    (void)unused;
    LEAK_READY(self);
    pf_leak_t *v;
    size_t n;
    int rc = pf_leak_detector_history(self->d, &v, &n);
    if (rc != 0) {
        return raise_code(rc);
    }
    PyObject *list = leak_list(v, n);
    pf_leak_list_free(v, n);
    return list;
}

static PyObject *
leak_clear_history(LeakObject *self, PyObject *unused)
{
    (void)unused;
    LEAK_READY(self);
    pf_leak_detector_clear_history(self->d);
    Py_RETURN_NONE;
}

static PyObject *
leak_start(LeakObject *self, PyObject *unused)
{
    (void)unused;
    LEAK_READY(self);
    if (self->sample != NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "a detector with a sample function is checked with "
                        "check(); monitoring samples /proc");
        return NULL;
    }
    int rc = pf_leak_detector_start_monitoring(self->d);
    if (rc == PF_ESTATE) {
        Py_RETURN_NONE; /* already monitoring: as the original, a no-op */
    }
    if (rc != 0) {
        return raise_code(rc);
    }
    Py_RETURN_NONE;
}

static PyObject *
leak_stop(LeakObject *self, PyObject *unused)
{
    (void)unused;
    LEAK_READY(self);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pf_leak_detector_stop_monitoring(self->d);
    Py_END_ALLOW_THREADS
    if (rc != 0 && rc != PF_ESTATE) {
        return raise_code(rc);
    }
    return ready();
}

static PyObject *
leak_is_monitoring(LeakObject *self, PyObject *unused)
{
    (void)unused;
    LEAK_READY(self);
    return PyBool_FromLong(pf_leak_detector_is_monitoring(self->d));
}

static PyObject *
leak_metrics(LeakObject *self, PyObject *unused)
{
    (void)unused;
    LEAK_READY(self);
    pf_leak_metrics_t m;
    pf_leak_detector_metrics(self->d, &m);
    PyObject *d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
    if (dict_set(d, "total_allocations", PyLong_FromUnsignedLongLong(m.total_allocations)) ||
        dict_set(d, "current_leaks", PyLong_FromUnsignedLongLong(m.current_leaks)) ||
        dict_set(d, "total_detected_leaks", PyLong_FromSize_t(m.history_len)) ||
        dict_set(d, "leak_threshold_seconds", PyFloat_FromDouble(m.leak_threshold)) ||
        dict_set(d, "oldest_allocation_age",
                 isnan(m.oldest_allocation_age)
                     ? Py_NewRef(Py_None)
                     : PyFloat_FromDouble(m.oldest_allocation_age)) ||
        dict_set(d, "allocations", PyLong_FromUnsignedLongLong(m.allocations)) ||
        dict_set(d, "releases", PyLong_FromUnsignedLongLong(m.releases)) ||
        dict_set(d, "leaks_detected_ever", PyLong_FromUnsignedLongLong(m.total_detected)) ||
        dict_set(d, "samples", PyLong_FromUnsignedLongLong(m.samples)) ||
        dict_set(d, "sample_errors", PyLong_FromUnsignedLongLong(m.sample_errors)) ||
        dict_set(d, "alerts", PyLong_FromUnsignedLongLong(m.alerts)) ||
        dict_set(d, "monitoring", PyBool_FromLong(m.monitoring)) ||
        dict_set(d, "alerting", alerting_dict(m.alerting)) ||
        dict_set(d, "last_sample", m.samples > m.sample_errors
                                       ? sample_dict(&m.last_sample)
                                       : Py_NewRef(Py_None)) ||
        dict_set(d, "memory_slope", PyFloat_FromDouble(m.memory_slope)) ||
        dict_set(d, "fd_slope", PyFloat_FromDouble(m.fd_slope))) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

static PyObject *
leak_name(LeakObject *self, PyObject *unused)
{
    (void)unused;
    LEAK_READY(self);
    return PyUnicode_FromString(pf_leak_detector_name(self->d));
}

static PyMethodDef leak_methods[] = {
    {"_track", (PyCFunction)leak_track, METH_VARARGS, NULL},
    {"_release", (PyCFunction)leak_release, METH_VARARGS, NULL},
    {"_check", (PyCFunction)leak_check, METH_NOARGS, NULL},
    {"_history", (PyCFunction)leak_history, METH_NOARGS, NULL},
    {"_raw_metrics", (PyCFunction)leak_metrics, METH_NOARGS, NULL},
    {"_name", (PyCFunction)leak_name, METH_NOARGS, NULL},
    {"clear_leak_history", (PyCFunction)leak_clear_history, METH_NOARGS,
     "Forget the leaks detected so far."},
    {"start_monitoring", (PyCFunction)leak_start, METH_NOARGS,
     "Start the monitoring thread (a no-op when it runs already)."},
    {"stop_monitoring", (PyCFunction)leak_stop, METH_NOARGS,
     "Stop the monitoring thread (done at once; awaitable)."},
    {"is_monitoring", (PyCFunction)leak_is_monitoring, METH_NOARGS,
     "True while the monitoring thread runs."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject LeakType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "puffinflow_c._core._Leak",
    .tp_basicsize = sizeof(LeakObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)leak_init,
    .tp_dealloc = (destructor)leak_dealloc,
    .tp_traverse = (traverseproc)leak_traverse,
    .tp_clear = (inquiry)leak_clear,
    .tp_methods = leak_methods,
    .tp_dictoffset = offsetof(LeakObject, dict),
};

/* ---- Degrade: the degradation manager ---------------------------------- */

typedef struct {
    PyObject_HEAD
    pf_degrade_t *d;
    PyObject *clock;    /* ManualClock kept alive, or NULL */
    PyObject *source;   /* a Python source, or NULL */
    PyObject *breakers; /* list: the breakers it watches, kept alive */
    PyObject *dict;
} DegradeObject;

/* The manager's source when a Python function is given: called on the
 * thread of update() / check_system_health(), which holds the GIL. It
 * returns (cpu_usage, memory_usage) or (cpu, memory, external_available);
 * None for a figure = unknown. */
static int
degrade_source_py(pf_system_health_t *out, void *arg)
{
    DegradeObject *self = arg;
    if (PyErr_Occurred()) {
        return PF_EINVAL;
    }
    PyObject *r = PyObject_CallNoArgs(self->source);
    if (r == NULL) {
        return PF_EINVAL;
    }
    if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) < 2 ||
        PyTuple_GET_SIZE(r) > 3) {
        PyErr_SetString(PyExc_TypeError,
                        "the source must return (cpu_usage, memory_usage"
                        "[, external_services_available])");
        Py_DECREF(r);
        return PF_EINVAL;
    }
    double *fig[2] = {&out->cpu_usage, &out->memory_usage};
    for (int i = 0; i < 2; i++) {
        PyObject *v = PyTuple_GET_ITEM(r, i);
        if (v == Py_None) {
            *fig[i] = NAN;
        } else if (PyBool_Check(v) || !(PyLong_Check(v) || PyFloat_Check(v))) {
            PyErr_SetString(PyExc_TypeError,
                            "cpu_usage and memory_usage must be numbers");
            Py_DECREF(r);
            return PF_EINVAL;
        } else {
            *fig[i] = PyFloat_AsDouble(v);
        }
    }
    if (PyTuple_GET_SIZE(r) == 3) {
        int t = PyObject_IsTrue(PyTuple_GET_ITEM(r, 2));
        if (t < 0) {
            Py_DECREF(r);
            return PF_EINVAL;
        }
        out->external_services_available = t;
    }
    Py_DECREF(r);
    return 0;
}

static int
degrade_init(DegradeObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name",      "modes",  "min_dwell",
                             "min_dwell_degrade", "clock", "source", NULL};
    PyObject *name, *modes, *dw, *dwd, *clk = Py_None, *source = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "UOOO|OO:_Degrade", kwlist,
                                     &name, &modes, &dw, &dwd, &clk,
                                     &source)) {
        return -1;
    }
    if (self->d != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "manager already initialised");
        return -1;
    }
    pf_degrade_config_t cfg;
    pf_degrade_config_init(&cfg);
    if (get_name(name, &cfg.name) != 0) {
        return -1;
    }
    if (get_seconds(dw, "min_dwell", 0, &cfg.min_dwell) != 0 ||
        get_seconds(dwd, "min_dwell_degrade", 0, &cfg.min_dwell_degrade) !=
            0) {
        return -1;
    }
    if (source != Py_None && !PyCallable_Check(source)) {
        PyErr_SetString(PyExc_TypeError, "source must be callable or None");
        return -1;
    }
    const char **names = NULL;
    if (modes != Py_None) {
        if (!PyTuple_Check(modes) || PyTuple_GET_SIZE(modes) == 0) {
            PyErr_SetString(PyExc_TypeError,
                            "modes must be a non-empty tuple of str");
            return -1;
        }
        Py_ssize_t n = PyTuple_GET_SIZE(modes);
        names = PyMem_Calloc((size_t)n, sizeof *names);
        if (names == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *s = PyTuple_GET_ITEM(modes, i);
            if (!PyUnicode_Check(s)) {
                PyErr_SetString(PyExc_TypeError, "each mode must be a str");
                PyMem_Free(names);
                return -1;
            }
            names[i] = PyUnicode_AsUTF8(s);
            if (names[i] == NULL) {
                PyMem_Free(names);
                return -1;
            }
        }
        cfg.modes = names;
        cfg.modes_len = (size_t)n;
    }
    PyObject *keep = NULL;
    if (get_clock(clk, &keep, &cfg.clock) != 0) {
        PyMem_Free(names);
        return -1;
    }
    if (source != Py_None) {
        cfg.source = degrade_source_py;
        cfg.source_arg = self;
        /* Set first: creating the manager takes a first reading. */
        Py_XSETREF(self->source, Py_NewRef(source));
    }
    PyObject *breakers = PyList_New(0);
    if (breakers == NULL) {
        PyMem_Free(names);
        Py_XDECREF(keep);
        return -1;
    }
    int rc = pf_degrade_new(&cfg, &self->d);
    PyMem_Free(names);
    if (rc != 0 || PyErr_Occurred()) {
        pf_degrade_free(self->d);
        self->d = NULL;
        Py_XDECREF(keep);
        Py_DECREF(breakers);
        Py_CLEAR(self->source);
        if (PyErr_Occurred()) {
            return -1;
        }
        if (rc == PF_EINVAL) {
            PyErr_SetString(PyExc_ValueError,
                            "modes must be unique, non-empty names");
        } else {
            raise_code(rc);
        }
        return -1;
    }
    self->clock = keep;
    self->breakers = breakers;
    return 0;
}

static int
degrade_traverse(DegradeObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->clock);
    Py_VISIT(self->source);
    Py_VISIT(self->breakers);
    Py_VISIT(self->dict);
    return 0;
}

/* Drops everything the object holds, the manager first (it reads the
 * clock, the source and the breakers): a source that refers back to the
 * manager (a bound method of it, say) makes a cycle only this can break.
 * The object is then "not initialised". */
static int
degrade_clear(DegradeObject *self)
{
    pf_degrade_free(self->d); /* no sampler thread runs */
    self->d = NULL;
    Py_CLEAR(self->breakers);
    Py_CLEAR(self->source);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->dict);
    return 0;
}

static void
degrade_dealloc(DegradeObject *self)
{
    PyObject_GC_UnTrack(self);
    degrade_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define DEGRADE_READY(self) REQUIRE_INIT((self)->d, "manager")

static PyObject *
health_tuple(const pf_system_health_t *h)
{
    return Py_BuildValue("(ddNd)", h->cpu_usage, h->memory_usage,
                         PyBool_FromLong(h->external_services_available),
                         (double)h->time_ns / 1e9);
}

/* _sample() -> (cpu_usage, memory_usage, external_available, time): the
 * signals, mode unchanged. */
static PyObject *
degrade_sample(DegradeObject *self, PyObject *unused)
{
    (void)unused;
    DEGRADE_READY(self);
    pf_system_health_t h;
    int rc = pf_degrade_check_system_health(self->d, &h);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (rc != 0) {
        return raise_code(rc);
    }
    return health_tuple(&h);
}

/* _evaluate(cpu_usage, memory_usage, external_available): apply the rules
 * to these signals (NaN = unknown). */
static PyObject *
degrade_evaluate(DegradeObject *self, PyObject *args)
{
    DEGRADE_READY(self);
    pf_system_health_t h = {0};
    int ext;
    if (!PyArg_ParseTuple(args, "ddp:_evaluate", &h.cpu_usage,
                          &h.memory_usage, &ext)) {
        return NULL;
    }
    h.external_services_available = ext;
    int rc = pf_degrade_evaluate(self->d, &h);
    if (rc != 0) {
        return raise_code(rc);
    }
    return PyUnicode_FromString(pf_degrade_mode_name(self->d));
}

static PyObject *
degrade_add_rule(DegradeObject *self, PyObject *arg)
{
    DEGRADE_READY(self);
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "a rule must be a str, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    const char *s = PyUnicode_AsUTF8(arg);
    if (s == NULL) {
        return NULL;
    }
    int rc = pf_degrade_add_rule_str(self->d, s);
    if (rc == PF_EINVAL) {
        PyErr_Format(PyExc_ValueError,
                     "bad rule %R (e.g. \"cpu > 90 -> reduced\"; the mode "
                     "must be one of the manager's)",
                     arg);
        return NULL;
    }
    if (rc != 0) {
        return raise_code(rc);
    }
    Py_RETURN_NONE;
}

static PyObject *
degrade_add_breaker(DegradeObject *self, PyObject *arg)
{
    DEGRADE_READY(self);
    pf_breaker_t *b = breaker_of(arg);
    if (b == NULL) {
        return NULL;
    }
    if (PyList_Append(self->breakers, arg) < 0) {
        return NULL;
    }
    int rc = pf_degrade_add_breaker(self->d, b);
    if (rc != 0) {
        return raise_code(rc);
    }
    Py_RETURN_NONE;
}

static PyObject *
degrade_set_gauge(DegradeObject *self, PyObject *args)
{
    DEGRADE_READY(self);
    const char *name;
    double v;
    if (!PyArg_ParseTuple(args, "sd:set_gauge", &name, &v)) {
        return NULL;
    }
    if (name[0] == '\0' || isnan(v)) {
        PyErr_SetString(PyExc_ValueError,
                        "a gauge needs a non-empty name and a number");
        return NULL;
    }
    int rc = pf_degrade_set_gauge(self->d, name, v);
    if (rc != 0) {
        return raise_code(rc);
    }
    Py_RETURN_NONE;
}

static PyObject *
degrade_override(DegradeObject *self, PyObject *arg)
{
    DEGRADE_READY(self);
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "mode must be a str");
        return NULL;
    }
    const char *s = PyUnicode_AsUTF8(arg);
    if (s == NULL) {
        return NULL;
    }
    if (pf_degrade_override(self->d, s) != 0) {
        PyErr_Format(PyExc_ValueError, "unknown mode %R", arg);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
degrade_clear_override(DegradeObject *self, PyObject *unused)
{
    (void)unused;
    DEGRADE_READY(self);
    return PyBool_FromLong(pf_degrade_clear_override(self->d) == 0);
}

static PyObject *
degrade_mode(DegradeObject *self, PyObject *unused)
{
    (void)unused;
    DEGRADE_READY(self);
    return PyUnicode_FromString(pf_degrade_mode_name(self->d));
}

static PyObject *
degrade_mode_index(DegradeObject *self, PyObject *unused)
{
    (void)unused;
    DEGRADE_READY(self);
    return PyLong_FromUnsignedLong(pf_degrade_mode(self->d));
}

static PyObject *
degrade_modes(DegradeObject *self, PyObject *unused)
{
    (void)unused;
    DEGRADE_READY(self);
    size_t n = pf_degrade_mode_count(self->d);
    PyObject *t = PyTuple_New((Py_ssize_t)n);
    for (size_t i = 0; t != NULL && i < n; i++) {
        PyObject *s = PyUnicode_FromString(pf_degrade_mode_name_at(self->d, i));
        if (s == NULL) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, s);
    }
    return t;
}

static PyObject *
degrade_metrics(DegradeObject *self, PyObject *unused)
{
    (void)unused;
    DEGRADE_READY(self);
    pf_degrade_metrics_t m;
    pf_degrade_metrics(self->d, &m);
    PyObject *d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
    if (dict_set(d, "name", PyUnicode_FromString(pf_degrade_name(self->d))) ||
        dict_set(d, "mode", PyUnicode_FromString(pf_degrade_mode_name_at(self->d, m.mode))) ||
        dict_set(d, "target", PyUnicode_FromString(pf_degrade_mode_name_at(self->d, m.target))) ||
        dict_set(d, "overridden", PyBool_FromLong(m.overridden)) ||
        dict_set(d, "time_in_mode", PyFloat_FromDouble(m.time_in_mode)) ||
        dict_set(d, "updates", PyLong_FromUnsignedLongLong(m.updates)) ||
        dict_set(d, "transitions", PyLong_FromUnsignedLongLong(m.transitions)) ||
        dict_set(d, "sample_errors", PyLong_FromUnsignedLongLong(m.sample_errors)) ||
        dict_set(d, "rules", PyLong_FromSize_t(m.rules)) ||
        dict_set(d, "last", health_tuple(&m.last))) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

static PyMethodDef degrade_methods[] = {
    {"_sample", (PyCFunction)degrade_sample, METH_NOARGS, NULL},
    {"_evaluate", (PyCFunction)degrade_evaluate, METH_VARARGS, NULL},
    {"_mode_index", (PyCFunction)degrade_mode_index, METH_NOARGS, NULL},
    {"_mode", (PyCFunction)degrade_mode, METH_NOARGS, NULL},
    {"_modes", (PyCFunction)degrade_modes, METH_NOARGS, NULL},
    {"_raw_metrics", (PyCFunction)degrade_metrics, METH_NOARGS, NULL},
    {"_add_breaker", (PyCFunction)degrade_add_breaker, METH_O, NULL},
    {"_override", (PyCFunction)degrade_override, METH_O, NULL},
    {"_clear_override", (PyCFunction)degrade_clear_override, METH_NOARGS,
     NULL},
    {"add_rule", (PyCFunction)degrade_add_rule, METH_O,
     "Add a rule written as text, e.g. \"cpu > 90 -> reduced\"."},
    {"set_gauge", (PyCFunction)degrade_set_gauge, METH_VARARGS,
     "set_gauge(name, value): a signal of the program's, for rules."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject DegradeType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "puffinflow_c._core._Degrade",
    .tp_basicsize = sizeof(DegradeObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)degrade_init,
    .tp_dealloc = (destructor)degrade_dealloc,
    .tp_traverse = (traverseproc)degrade_traverse,
    .tp_clear = (inquiry)degrade_clear,
    .tp_methods = degrade_methods,
    .tp_dictoffset = offsetof(DegradeObject, dict),
};

/* ---- clock helpers ------------------------------------------------------ */

/* _monotonic() -> the library's system clock in seconds (the clock every
 * object uses when no ManualClock is given). */
static PyObject *
monotonic(PyObject *mod, PyObject *unused)
{
    (void)mod;
    (void)unused;
    return PyFloat_FromDouble(pf_clock_now(NULL));
}

static PyMethodDef extra_functions[] = {
    {"_monotonic", monotonic, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

int
extras_init(PyObject *m)
{
    if (PyType_Ready(&LeakType) < 0 || PyType_Ready(&DegradeType) < 0 ||
        PyModule_AddObjectRef(m, "_Leak", (PyObject *)&LeakType) < 0 ||
        PyModule_AddObjectRef(m, "_Degrade", (PyObject *)&DegradeType) < 0 ||
        PyModule_AddFunctions(m, extra_functions) < 0) {
        return -1;
    }
    return 0;
}
