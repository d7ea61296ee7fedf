/* What an HTTP outcome means for a breaker and a retry policy, and the
 * Retry-After header. Pure functions: no state, no allocation. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>

#include "puffinflow/curl.h"
#include "puffinflow/error.h"

bool
pf_curl_is_failure(int result, long http_status)
{
    if (result == PF_ECANCELED) {
        return false; /* the caller stopped it: nothing about the server */
    }
    if (result != 0) {
        return true; /* timeout or transport error */
    }
    /* 408 and 429 say "not now": retrying later can succeed, and a flood
     * of them is a server in trouble. Other 4xx are the request's fault. */
    return http_status >= 500 || http_status == 408 || http_status == 429;
}

/* Delta-seconds: 1*DIGIT, nothing else but surrounding spaces. */
static int
parse_seconds(const char *v, double *seconds)
{
    const char *p = v;
    double n = 0;

    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (!isdigit((unsigned char)*p)) {
        return PF_EFORMAT;
    }
    while (isdigit((unsigned char)*p)) {
        n = n * 10 + (*p - '0');
        p++;
    }
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (*p != '\0') {
        return PF_EFORMAT;
    }
    *seconds = n;
    return 0;
}

int
pf_curl_retry_after_parse(const char *value, int64_t now_unix,
                          double *seconds)
{
    time_t at;

    if (value == NULL || seconds == NULL) {
        return PF_EINVAL;
    }
    if (parse_seconds(value, seconds) == 0) {
        return 0;
    }
    /* libcurl's date parser takes the three HTTP-date forms (RFC 9110
     * 5.6.7): IMF-fixdate, RFC 850 and asctime. */
    at = curl_getdate(value, NULL);
    if (at == (time_t)-1 || !isalpha((unsigned char)value[0])) {
        return PF_EFORMAT;
    }
    *seconds = (int64_t)at > now_unix ? (double)((int64_t)at - now_unix) : 0;
    return 0;
}
