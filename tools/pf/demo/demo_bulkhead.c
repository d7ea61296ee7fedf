/* pf demo, scene "bulkhead": the reference's IsolatedAgent.
 *
 * Agent "isolated" takes one job per run: its first state, "dispatch",
 * routes the run to the job's state (pf_ctx_goto). CPU jobs share the
 * bulkhead cpu-work (2 at a time, 1 may wait, for at most 5 s); io jobs
 * share io-work (4 at a time). A job turned away (PF_EFULL) is not
 * retried: its fallback defers it to a batch queue.
 *
 * Jobs take simulated time on worker threads (demo_sleep on the state's
 * token), so a job inside a bulkhead really holds its slot while the clock
 * moves. The scene starts one job at a time and waits until it has settled
 * (inside, queued or turned away) before the next, so the output is always
 * in the same order:
 *
 *   0 s    cpu 1 (3 s) and cpu 2 (10 s) fill cpu-work; cpu 3 waits in the
 *          queue; cpu 4 finds the queue full; io 1-3 go straight in
 *   3 s    cpu 1 ends: its slot goes to cpu 3, queued since 0 s
 *   3.5 s  cpu 5 queues, and gives up at 8.5 s: no slot came in 5 s
 *   9, 10  cpu 3 and cpu 2 end */
#include <stdio.h>

#include "demo.h"

enum { CPU_JOBS = 5, IO_JOBS = 3, JOBS = CPU_JOBS + IO_JOBS };

typedef struct bulkhead_scene bulkhead_scene_t;

typedef struct job {
    bulkhead_scene_t *scene;
    char name[16];
    double seconds;          /* how long it works */
    pf_bulkhead_t *bulkhead; /* its pool, for the line it prints */
} job_t;

struct bulkhead_scene {
    demo_t *demo;
    pf_bulkhead_t *cpu;
    pf_bulkhead_t *io;
    job_t jobs[JOBS]; /* cpu_job_1.., then io_job_1.. */
    pf_run_t *runs[JOBS];
    pf_ctx_t *ctxs[JOBS];
};

static const double cpu_seconds[CPU_JOBS] = {3.0, 10.0, 6.0, 2.0, 2.0};
static const double io_seconds[IO_JOBS] = {0.4, 0.5, 0.6};

/* The router: remember when the job arrived, then go to its state. */
static int
dispatch(pf_ctx_t *ctx, void *arg)
{
    bulkhead_scene_t *s = arg;
    char job[16];
    int rc = pf_ctx_get_string(ctx, "job", job, sizeof(job), NULL);

    if (rc == 0) {
        rc = pf_ctx_set_double(ctx, "arrived", demo_now(s->demo));
    }
    return rc != 0 ? rc : pf_ctx_goto(ctx, job);
}

/* A job: it is inside its bulkhead when this runs. */
static int
work(pf_ctx_t *ctx, void *arg)
{
    job_t *j = arg;
    demo_t *d = j->scene->demo;
    pf_bulkhead_metrics_t m;
    double arrived = 0.0;
    double waited;
    char queued[48] = "";
    int rc;

    pf_ctx_get_double(ctx, "arrived", &arrived);
    waited = demo_now(d) - arrived;
    if (waited > 0.0) {
        snprintf(queued, sizeof(queued), " after %.1f s in its queue", waited);
    }
    pf_bulkhead_metrics(j->bulkhead, &m);
    demo_say(d, j->name, "inside %s%s (%u of %u slots in use): works %g s",
             pf_bulkhead_name(j->bulkhead), queued, m.in_use, m.max_concurrent,
             j->seconds);
    rc = demo_sleep(d, pf_ctx_token(ctx), j->seconds);
    if (rc != 0) {
        return rc;
    }
    demo_say(d, j->name, "done");
    demo_bump(d, DEMO_MARK_A);
    return 0;
}

/* A job the bulkhead turned away goes to a batch queue (not modelled). */
static int
defer(pf_ctx_t *ctx, void *arg, int reason)
{
    (void)arg;
    (void)reason;
    return pf_ctx_set_string(ctx, "deferred", "batch queue");
}

static int
add_jobs(bulkhead_scene_t *s, pf_agent_t *a)
{
    pf_state_opts_t o;
    int rc = 0;

    for (int i = 0; i < JOBS && rc == 0; i++) {
        job_t *j = &s->jobs[i];
        bool cpu = i < CPU_JOBS;

        j->scene = s;
        j->bulkhead = cpu ? s->cpu : s->io;
        j->seconds = cpu ? cpu_seconds[i] : io_seconds[i - CPU_JOBS];
        snprintf(j->name, sizeof(j->name), "%s_job_%d", cpu ? "cpu" : "io",
                 cpu ? i + 1 : i - CPU_JOBS + 1);
        pf_state_opts_init(&o);
        o.bulkhead = j->bulkhead;
        o.max_retries = 0;
        o.fallback = defer;
        o.fallback_on_failure = true; /* PF_EFULL is a failure, not a
                                         breaker's rejection */
        rc = pf_agent_add_state(a, j->name, work, j, &o);
    }
    return rc;
}

static int
make_agent(bulkhead_scene_t *s, pf_agent_t **out)
{
    demo_t *d = s->demo;
    pf_bulkhead_config_t cfg;
    int rc;

    pf_bulkhead_config_init(&cfg);
    cfg.name = "cpu-work";
    cfg.max_concurrent_calls = 2;
    cfg.max_queue_size = 1;
    cfg.max_wait_duration = 5.0;
    rc = demo_bulkhead(d, &cfg, &s->cpu);
    if (rc != 0) {
        return rc;
    }
    pf_bulkhead_config_init(&cfg);
    cfg.name = "io-work";
    cfg.max_concurrent_calls = 4;
    cfg.max_queue_size = 4;
    cfg.max_wait_duration = 5.0;
    rc = demo_bulkhead(d, &cfg, &s->io);
    if (rc != 0) {
        return rc;
    }
    rc = demo_agent(d, "isolated", PF_EXEC_SEQUENTIAL, NULL, out);
    if (rc != 0) {
        return rc;
    }
    rc = pf_agent_add_state(*out, "dispatch", dispatch, s, NULL);
    if (rc == 0) {
        rc = add_jobs(s, *out);
    }
    if (rc != 0) {
        pf_agent_free(*out);
    }
    return rc;
}

/* Start job i; a failure to start is a failed step of the scene. */
static void
start_job(bulkhead_scene_t *s, pf_agent_t *a, int i)
{
    int rc = pf_ctx_new(&s->ctxs[i]);

    if (rc == 0) {
        rc = pf_ctx_set_string(s->ctxs[i], "job", s->jobs[i].name);
    }
    if (rc == 0) {
        rc = demo_start(s->demo, a, s->ctxs[i], 0.0, &s->runs[i]);
    }
    demo_expect(s->demo, rc == 0, "%s to start (%s)", s->jobs[i].name,
                pf_strerror(rc));
}

typedef struct queue_wait {
    pf_bulkhead_t *bh;
    unsigned waiting;
} queue_wait_t;

static bool
queue_reached(void *arg)
{
    queue_wait_t *w = arg;
    pf_bulkhead_metrics_t m;

    pf_bulkhead_metrics(w->bh, &m);
    return m.waiting == w->waiting;
}

/* Start job i and wait until it waits in cpu-work's queue: the bulkhead
 * has no event for that, its metrics tell. */
static void
start_queued_job(bulkhead_scene_t *s, pf_agent_t *a, int i)
{
    queue_wait_t w = {s->cpu, 1};
    char what[64];

    start_job(s, a, i);
    snprintf(what, sizeof(what), "%s to wait in the queue", s->jobs[i].name);
    if (demo_await(s->demo, queue_reached, &w, what) == 0) {
        demo_say(s->demo, "bulkhead cpu-work",
                 "%s waits in the queue (2 of 2 slots in use; it waits at "
                 "most 5 s)",
                 s->jobs[i].name);
    }
}

/* The timeline in the file comment. Each step waits for what it causes
 * before the next: a job parked inside its bulkhead (DEMO_PARKED), a job
 * done (DEMO_MARK_A), a job turned away (its fallback). */
static void
play(bulkhead_scene_t *s, pf_agent_t *a)
{
    demo_t *d = s->demo;

    start_job(s, a, 0);
    demo_await_count(d, DEMO_PARKED, 1, "cpu_job_1 inside cpu-work");
    start_job(s, a, 1);
    demo_await_count(d, DEMO_PARKED, 2, "cpu_job_2 inside cpu-work");
    start_queued_job(s, a, 2);
    start_job(s, a, 3);
    demo_await_count(d, DEMO_FALLBACKS, 1,
                     "cpu_job_4 turned away: the queue is full");
    for (int i = 0; i < IO_JOBS; i++) {
        start_job(s, a, CPU_JOBS + i);
        demo_await_count(d, DEMO_PARKED, 3 + (unsigned)i,
                         "an io job let straight in");
    }
    for (int i = 0; i < IO_JOBS; i++) {
        demo_advance_to(d, io_seconds[i]);
        demo_await_count(d, DEMO_MARK_A, 1 + (unsigned)i,
                         "an io job done while cpu-work is full");
    }
    demo_advance_to(d, 3.0);
    demo_await_count(d, DEMO_PARKED, 6,
                     "cpu_job_3 let in when cpu_job_1 is done");
    demo_advance_to(d, 3.5);
    start_queued_job(s, a, 4);
    demo_advance_to(d, 8.5);
    demo_await_count(d, DEMO_FALLBACKS, 2,
                     "cpu_job_5 to give up after waiting 5 s");
    demo_advance_to(d, 9.0);
    demo_await_count(d, DEMO_MARK_A, 5, "cpu_job_3 done");
    demo_advance_to(d, 10.0);
    demo_await_count(d, DEMO_MARK_A, 6, "cpu_job_2 done");
}

static void
check_and_summarise(bulkhead_scene_t *s)
{
    demo_t *d = s->demo;
    pf_bulkhead_metrics_t c;
    pf_bulkhead_metrics_t i;

    pf_bulkhead_metrics(s->cpu, &c);
    pf_bulkhead_metrics(s->io, &i);
    demo_blank(d);
    demo_note(d,
              "bulkhead cpu-work: %llu let in, %llu turned away (%llu: "
              "queue full, %llu: waited 5 s), at most %u inside at once",
              (unsigned long long)c.accepted,
              (unsigned long long)(c.rejected_full + c.rejected_timeout),
              (unsigned long long)c.rejected_full,
              (unsigned long long)c.rejected_timeout, c.peak_in_use);
    demo_note(d,
              "bulkhead io-work:  %llu let in, %llu turned away, at most "
              "%u inside at once: io work never waited for cpu work",
              (unsigned long long)i.accepted,
              (unsigned long long)(i.rejected_full + i.rejected_timeout),
              i.peak_in_use);
    demo_expect(d,
                c.rejected_full == 1 && demo_count(d, DEMO_BULKHEAD_FULL) == 1,
                "one cpu job turned away with the queue full");
    demo_expect(
        d, c.rejected_timeout == 1 && demo_count(d, DEMO_BULKHEAD_TIMEOUT) == 1,
        "one cpu job to give up after waiting 5 s");
    demo_expect(d, c.accepted == 3 && c.peak_in_use == 2,
                "3 cpu jobs let in, never more than 2 at once");
    demo_expect(d, i.accepted == 3 && i.rejected_full + i.rejected_timeout == 0,
                "every io job let in at once");
}

int
demo_scene_bulkhead(demo_t *d)
{
    bulkhead_scene_t *s = demo_alloc(d, sizeof(*s));
    pf_agent_t *a;
    int rc;

    if (s == NULL) {
        return PF_ENOMEM;
    }
    s->demo = d;
    rc = make_agent(s, &a);
    if (rc != 0) {
        return rc;
    }
    demo_note(d, "Agent isolated runs one job per run. CPU jobs share "
                 "bulkhead cpu-work (2 at a time,");
    demo_note(d, "1 may queue for up to 5 s); io jobs share io-work (4 at a "
                 "time). A job turned");
    demo_note(d, "away is deferred to a batch queue by its fallback. Jobs "
                 "arrive while cpu-work is full.");
    demo_blank(d);
    play(s, a);
    for (int i = 0; i < JOBS; i++) {
        if (s->runs[i] != NULL) {
            demo_finish(d, s->runs[i], NULL);
        }
        pf_ctx_free(s->ctxs[i]);
    }
    if (demo_verdict(d) == 0) {
        check_and_summarise(s);
    }
    pf_agent_free(a);
    return demo_verdict(d);
}
