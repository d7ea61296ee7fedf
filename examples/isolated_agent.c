/* The reference's IsolatedAgent: CPU-heavy work and I/O work each run in
 * their own bulkhead, so a flood of one can never starve the other.
 *
 *   cpu_bulkhead = Bulkhead(BulkheadConfig(max_concurrent_calls=4,
 *                  max_wait_duration=10, name="cpu_intensive_operations"))
 *   io_bulkhead  = Bulkhead(BulkheadConfig(max_concurrent_calls=20,
 *                  max_wait_duration=5, name="io_operations"))
 *   async with self.cpu_bulkhead: ctx.cpu_result = await heavy_computation()
 *   async with self.io_bulkhead:  ctx.io_result = await database_operation()
 *
 * Here each task is a thread calling pf_bulkhead_call. Eight CPU tasks
 * arrive: four get in and hold their slots (their computation waits for a
 * gate), four queue. Then forty I/O tasks arrive while the CPU side is
 * completely saturated: twenty get in at once, twenty queue, and all forty
 * finish — the CPU bulkhead never slowed them down. Finally the CPU gate
 * opens and all eight CPU tasks finish.
 *
 * The program checks what it promises and exits 0 only if it all held:
 * never more than 4 CPU or 20 I/O tasks inside at once, both limits
 * reached, every I/O task done while no CPU task could finish, a newcomer
 * refused by the full CPU bulkhead but let into the I/O one, and every
 * task done in the end. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#include "puffinflow/bulkhead.h"
#include "puffinflow/error.h"

#define CPU_TASKS 8
#define IO_TASKS 40

/* A bulkhead and what the example observes about it. */
typedef struct side {
    pf_bulkhead_t *bh;
    atomic_int inside;     /* tasks inside right now */
    atomic_int max_inside; /* the most seen at once */
    atomic_int done;       /* tasks that finished their work */
    atomic_bool gate_open; /* the work inside waits for this */
} side_t;

typedef struct task {
    side_t *side;
    long result; /* ctx.cpu_result / ctx.io_result */
    int rc;
    pthread_t tid;
} task_t;

static bool g_ok = true;

static void
check(bool cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "FAILED: %s\n", what);
        g_ok = false;
    }
}

static void
enter_side(side_t *s)
{
    int n = atomic_fetch_add(&s->inside, 1) + 1;
    int m = atomic_load(&s->max_inside);

    while (n > m && !atomic_compare_exchange_weak(&s->max_inside, &m, n)) {
    }
    while (!atomic_load(&s->gate_open)) {
        sched_yield();
    }
}

static void
leave_side(side_t *s)
{
    atomic_fetch_sub(&s->inside, 1);
    atomic_fetch_add(&s->done, 1);
}

/* heavy_computation(): runs only inside the CPU bulkhead. */
static int
heavy_computation(void *arg)
{
    task_t *t = arg;
    long sum = 0;

    enter_side(t->side);
    for (long i = 1; i <= 100000; i++) {
        sum += i % 7;
    }
    t->result = sum;
    leave_side(t->side);
    return 0;
}

/* database_operation(): runs only inside the I/O bulkhead. */
static int
database_operation(void *arg)
{
    task_t *t = arg;

    enter_side(t->side);
    t->result = 42;
    leave_side(t->side);
    return 0;
}

static void *
cpu_task(void *arg)
{
    task_t *t = arg;

    t->rc = pf_bulkhead_call(t->side->bh, heavy_computation, t);
    return NULL;
}

static void *
io_task(void *arg)
{
    task_t *t = arg;

    t->rc = pf_bulkhead_call(t->side->bh, database_operation, t);
    return NULL;
}

static int
make_bulkhead(const char *name, unsigned max_calls, double max_wait, side_t *s)
{
    pf_bulkhead_config_t cfg;

    pf_bulkhead_config_init(&cfg);
    cfg.name = name;
    cfg.max_concurrent_calls = max_calls;
    cfg.max_wait_duration = max_wait;
    atomic_init(&s->inside, 0);
    atomic_init(&s->max_inside, 0);
    atomic_init(&s->done, 0);
    atomic_init(&s->gate_open, false);
    return pf_bulkhead_new(&cfg, &s->bh);
}

/* Wait (yielding) until the bulkhead has `in_use` inside and `waiting`
 * queued. */
static void
wait_for(side_t *s, unsigned in_use, unsigned waiting)
{
    pf_bulkhead_metrics_t m;

    do {
        sched_yield();
        pf_bulkhead_metrics(s->bh, &m);
    } while (m.in_use != in_use || m.waiting != waiting);
}

static void
report(side_t *s)
{
    pf_bulkhead_metrics_t m;

    pf_bulkhead_metrics(s->bh, &m);
    printf("%-26s limit %2u  accepted %3llu  peak %2u  rejected %llu/%llu "
           "(full/timeout)\n",
           pf_bulkhead_name(s->bh), m.max_concurrent,
           (unsigned long long)m.accepted, m.peak_in_use,
           (unsigned long long)m.rejected_full,
           (unsigned long long)m.rejected_timeout);
}

int
main(void)
{
    side_t cpu;
    side_t io;
    task_t cpu_tasks[CPU_TASKS];
    task_t io_tasks[IO_TASKS];
    int i;

    if (make_bulkhead("cpu_intensive_operations", 4, 10.0, &cpu) != 0 ||
        make_bulkhead("io_operations", 20, 5.0, &io) != 0) {
        fprintf(stderr, "could not create the bulkheads\n");
        return 1;
    }

    /* A flood of CPU work: 4 inside, 4 queued. */
    for (i = 0; i < CPU_TASKS; i++) {
        cpu_tasks[i] = (task_t){.side = &cpu};
        if (pthread_create(&cpu_tasks[i].tid, NULL, cpu_task, &cpu_tasks[i]) !=
            0) {
            fprintf(stderr, "could not start a thread\n");
            return 1;
        }
    }
    wait_for(&cpu, 4, 4);
    check(pf_bulkhead_try_enter(cpu.bh) == PF_EFULL,
          "a newcomer is refused by the full CPU bulkhead");

    /* I/O work meanwhile: its own bulkhead has all its room. */
    check(pf_bulkhead_try_enter(io.bh) == 0,
          "the I/O bulkhead has room while the CPU one is full");
    pf_bulkhead_leave(io.bh);
    for (i = 0; i < IO_TASKS; i++) {
        io_tasks[i] = (task_t){.side = &io};
        if (pthread_create(&io_tasks[i].tid, NULL, io_task, &io_tasks[i]) !=
            0) {
            fprintf(stderr, "could not start a thread\n");
            return 1;
        }
    }
    wait_for(&io, 20, 20);
    atomic_store(&io.gate_open, true);
    for (i = 0; i < IO_TASKS; i++) {
        pthread_join(io_tasks[i].tid, NULL);
        check(io_tasks[i].rc == 0 && io_tasks[i].result == 42,
              "every I/O task ran");
    }
    check(atomic_load(&io.done) == IO_TASKS, "all I/O work is done");
    check(atomic_load(&cpu.done) == 0,
          "... while no CPU task could finish: the sides are isolated");

    /* Now let the CPU work finish; the queued four follow. */
    atomic_store(&cpu.gate_open, true);
    for (i = 0; i < CPU_TASKS; i++) {
        pthread_join(cpu_tasks[i].tid, NULL);
        check(cpu_tasks[i].rc == 0 && cpu_tasks[i].result > 0,
              "every CPU task ran");
    }
    check(atomic_load(&cpu.done) == CPU_TASKS, "all CPU work is done");
    check(atomic_load(&cpu.max_inside) == 4, "at most 4 CPU tasks at once");
    check(atomic_load(&io.max_inside) == 20, "at most 20 I/O tasks at once");

    report(&cpu);
    report(&io);
    pf_bulkhead_free(cpu.bh);
    pf_bulkhead_free(io.bh);
    if (!g_ok) {
        return 1;
    }
    printf("isolation held: %d I/O tasks done while the CPU bulkhead was "
           "full\n",
           IO_TASKS);
    return 0;
}
