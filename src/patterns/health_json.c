/* A health report as JSON, in the shape health endpoints serve:
 * {"status": ..., "checks": {name: {...}, ...}} plus the checker's name,
 * the time, the duration and the failed checks. Written with strbuf.c's
 * JSON helpers, so every string is escaped. */
#include <stdio.h>
#include <time.h>

#include "puffinflow/alloc.h"
#include "puffinflow/error.h"
#include "puffinflow/health.h"

#include "health_impl.h"
#include "strbuf.h"

void
pf__health_iso_time(int64_t ns, char *buf, size_t len)
{
    time_t secs = (time_t)(ns / 1000000000);
    int ms = (int)((ns % 1000000000) / 1000000);
    struct tm tm;

    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(buf, len, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

/* A wall-clock time as a JSON string, or null for "never". */
static void
json_time(pf__sb_t *sb, int64_t ns)
{
    char buf[48];

    if (ns <= 0) {
        pf__sb_append(sb, "null");
        return;
    }
    pf__health_iso_time(ns, buf, sizeof(buf));
    pf__sb_json_str(sb, buf);
}

static void
json_ms(pf__sb_t *sb, double seconds)
{
    pf__sb_appendf(sb, "%.3f", seconds * 1e3);
}

static void
json_entry(pf__sb_t *sb, const pf_health_entry_t *e)
{
    bool first = true;

    pf__sb_append(sb, "{");
    pf__sb_json_member_str(sb, &first, "status",
                           pf_health_status_name(e->status));
    pf__sb_json_member_str(sb, &first, "message", e->message);
    pf__sb_json_member_bool(sb, &first, "critical", e->critical);
    pf__sb_json_key(sb, &first, "duration_ms");
    json_ms(sb, e->duration);
    pf__sb_json_key(sb, &first, "time");
    json_time(sb, e->time_ns);
    pf__sb_json_member_bool(sb, &first, "cached", e->cached);
    pf__sb_json_member_bool(sb, &first, "timed_out", e->timed_out);
    pf__sb_json_member_int(sb, &first, "consecutive_failures",
                           (int64_t)e->consecutive_failures);
    pf__sb_append(sb, "}");
}

static void
json_report(pf__sb_t *sb, const pf_health_report_t *r)
{
    bool first = true;
    bool first_check = true;
    size_t i;

    pf__sb_append(sb, "{");
    pf__sb_json_member_str(sb, &first, "status",
                           pf_health_status_name(r->status));
    pf__sb_json_member_bool(sb, &first, "healthy", r->status != PF_UNHEALTHY);
    pf__sb_json_member_str(sb, &first, "checker", r->checker);
    pf__sb_json_key(sb, &first, "time");
    json_time(sb, r->time_ns);
    pf__sb_json_key(sb, &first, "duration_ms");
    json_ms(sb, (double)r->duration_ns / 1e9);
    pf__sb_json_key(sb, &first, "checks");
    pf__sb_append(sb, "{");
    for (i = 0; i < r->n; i++) {
        pf__sb_json_key(sb, &first_check, r->items[i].pub.name);
        json_entry(sb, &r->items[i].pub);
    }
    pf__sb_append(sb, "}");
    pf__sb_json_key(sb, &first, "failed_checks");
    pf__sb_append(sb, "[");
    for (i = 0; i < r->nfailed; i++) {
        if (i > 0) {
            pf__sb_append(sb, ",");
        }
        pf__sb_json_str(sb, r->failed[i]);
    }
    pf__sb_append(sb, "]}");
}

int
pf_health_report_json(const pf_health_report_t *r, char *buf, size_t len,
                      size_t *needed)
{
    pf__sb_t sb = PF__SB_INIT;

    if (r == NULL || (buf == NULL && len > 0)) {
        return PF_EINVAL;
    }
    json_report(&sb, r);
    return pf__sb_copy_out(&sb, buf, len, needed);
}

int
pf_health_report_json_alloc(const pf_health_report_t *r, char **out)
{
    pf__sb_t sb = PF__SB_INIT;

    if (r == NULL || out == NULL) {
        return PF_EINVAL;
    }
    json_report(&sb, r);
    return pf__sb_finish(&sb, out);
}
