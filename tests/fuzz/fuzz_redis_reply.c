/* Fuzz the Redis store's checks of what Redis answers
 * (integrations/redis): a reply is untrusted input.
 *
 * The input is raw RESP bytes, read by hiredis's reader into replies as a
 * connection would. Each reply goes to every check the store makes of one:
 * each kind's script answer (the rate limiter's and the bulkhead's with
 * several batches and limits, 0 and UINT_MAX among them), the setup
 * answers (an OK status, a script's SHA1), the subscribed connection's
 * sorting of what it got, and the published-message parser (the reply,
 * and every element of an array, as the message).
 *
 * Checked: whatever a check accepts is what the store goes on to read
 * (re-checked here independently: an array of that many integers in
 * range, 40 lowercase hex digits, a message whose fields rebuild the
 * input); no memory error, leak or undefined behaviour.
 *
 * The reader gets the store's own limits (pf__redis_reader_limits): an
 * array of more than 1,024 elements fails the read, as it does on the
 * store's connections (hiredis 0.14 would otherwise allocate the element
 * table of any count it reads: 2^31 - 1 is 16 GiB). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include "redis_impl.h"

#include "fuzz_util.h"

/* An array of exactly n integers, the i-th in [lo[i], hi[i]]. */
static bool
ints_in(const redisReply *rep, size_t n, const long long *lo,
        const long long *hi)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = rep->element[i];

        if (e->type != REDIS_REPLY_INTEGER || e->integer < lo[i] ||
            e->integer > hi[i]) {
            return false;
        }
    }
    return true;
}

static void
check_scripts(const redisReply *rep)
{
    static const unsigned sizes[] = {0, 1, 2, 5, 8, 1000, UINT_MAX};
    static const long long b_lo[] = {0, 0, 0, -1, 0};
    static const long long b_hi[] = {1, INT64_MAX, 2, INT64_MAX, 1};
    static const long long g_lo[] = {0, 0};
    static const long long g_hi[] = {INT64_MAX, INT64_MAX};
    bool ok;

    ok = pf__redis_breaker_reply_ok(rep);
    FUZZ_CHECK(ok == ints_in(rep, 5, b_lo, b_hi), "breaker reply: %d", ok);
    ok = pf__redis_budget_reply_ok(rep);
    FUZZ_CHECK(ok == ints_in(rep, 2, g_lo, g_hi), "budget reply: %d", ok);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        long long r_lo[] = {0, 0};
        long long r_hi[] = {2 * (long long)sizes[i], 3600LL * 1000000};
        long long h_lo[] = {0, 1, 0, 0};
        long long h_hi[] = {sizes[i], INT64_MAX, INT64_MAX, 1};

        ok = pf__redis_ratelimit_reply_ok(rep, sizes[i]);
        FUZZ_CHECK(ok == ints_in(rep, 2, r_lo, r_hi),
                   "rate limiter reply, batch %u: %d", sizes[i], ok);
        ok = pf__redis_bulkhead_reply_ok(rep, sizes[i]);
        FUZZ_CHECK(ok == ints_in(rep, 4, h_lo, h_hi),
                   "bulkhead reply, limit %u: %d", sizes[i], ok);
    }
}

static void
check_setup(const redisReply *rep)
{
    if (pf__redis_setup_reply_ok(rep, false)) {
        FUZZ_CHECK(rep->type == REDIS_REPLY_STATUS && rep->len == 2 &&
                       memcmp(rep->str, "OK", 2) == 0,
                   "an OK that is not +OK");
    }
    if (pf__redis_setup_reply_ok(rep, true)) {
        FUZZ_CHECK(rep->type == REDIS_REPLY_STRING && rep->len == 40 &&
                       strspn(rep->str, "0123456789abcdef") >= 40,
                   "a SHA1 that is not 40 lowercase hex digits");
    }
}

/* Any reply as a published message (the store parses only strings; the
 * parser reads len and str alone). One accepted rebuilds the input from
 * its fields (the numbers as written may differ: "+1", "007"), and its
 * numbers are in range. */
static void
check_message(const redisReply *rep)
{
    message_t m;
    size_t name_len;
    size_t origin_len;

    if (!pf__redis_parse_message(rep, &m)) {
        return;
    }
    name_len = strlen(m.name);
    origin_len = strlen(m.origin);
    FUZZ_CHECK(strchr(m.name, '|') == NULL && strchr(m.origin, '|') == NULL,
               "a field with a '|'");
    FUZZ_CHECK(rep->len > 2 + name_len + origin_len &&
                   memcmp(rep->str, "B|", 2) == 0 &&
                   memcmp(rep->str + 2, m.name, name_len) == 0 &&
                   rep->str[2 + name_len] == '|' &&
                   rep->str[rep->len - origin_len - 1] == '|' &&
                   memcmp(rep->str + rep->len - origin_len, m.origin,
                          origin_len) == 0,
               "the fields do not rebuild the message");
    FUZZ_CHECK(m.gen <= INT64_MAX && m.state >= 0 && m.state <= 2 &&
                   m.left >= -1,
               "gen %llu state %lld left %lld", m.gen, m.state, m.left);
}

static void
check_sub(const redisReply *rep)
{
    sub_reply_t kind;

    /* The store's subscribed connection only sees arrays or scalars from
     * the reader, as here. */
    kind = pf__redis_sub_reply(rep);
    if (kind == SUB_BAD) {
        return;
    }
    FUZZ_CHECK(rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
                   rep->element[0]->type == REDIS_REPLY_STRING,
               "a subscription reply that is not a 3-array");
    if (kind == SUB_MESSAGE) {
        FUZZ_CHECK(rep->element[2]->type == REDIS_REPLY_STRING,
                   "a message that is not a string");
        check_message(rep->element[2]);
    }
}

static void
check_reply(const redisReply *rep)
{
    check_scripts(rep);
    check_setup(rep);
    check_sub(rep);
    check_message(rep);
    if (rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < rep->elements; i++) {
            check_message(rep->element[i]);
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    redisReader *rd = redisReaderCreate();
    void *reply;

    FUZZ_CHECK(rd != NULL, "no reader");
    pf__redis_reader_limits(rd); /* as the store's connections have it */
    /* In two pieces, as a connection may deliver them: the replies whole
     * after the first are read before the second comes. */
    for (int piece = 0; piece < 2; piece++) {
        size_t at = piece == 0 ? 0 : size / 2;
        size_t n = piece == 0 ? size / 2 : size - size / 2;

        if (redisReaderFeed(rd, (const char *)data + at, n) != REDIS_OK) {
            break;
        }
        while (redisReaderGetReply(rd, &reply) == REDIS_OK && reply != NULL) {
            check_reply(reply);
            freeReplyObject(reply);
        }
    }
    redisReaderFree(rd);
    return 0;
}
