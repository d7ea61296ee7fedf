/* Error codes: one name and one sentence per code. A switch with no
 * default, so -Wswitch flags a code added to error.h and not named here. */
#include <stddef.h>

#include "puffinflow/error.h"

const char *
pf_strerror(int code)
{
    switch ((pf_error_t)code) {
    case PF_OK:
        return "success";
    case PF_EINVAL:
        return "invalid argument";
    case PF_ENOMEM:
        return "out of memory";
    case PF_EOPEN:
        return "circuit breaker is open";
    case PF_EFULL:
        return "bulkhead is full";
    case PF_ERATELIMIT:
        return "rate limit exceeded";
    case PF_ETIMEDOUT:
        return "timed out";
    case PF_EDEADLINE:
        return "deadline exceeded";
    case PF_ECANCELED:
        return "cancelled";
    case PF_EUNHEALTHY:
        return "health check failed";
    case PF_ENOTFOUND:
        return "not found";
    case PF_EEXIST:
        return "already exists";
    case PF_ESTATE:
        return "not allowed in the current state";
    case PF_ESYSTEM:
        return "system call failed";
    case PF_EFORMAT:
        return "malformed input";
    case PF_EBUDGET:
        return "retry budget exhausted";
    case PF_ERANGE:
        return "buffer too small or value out of range";
    case PF_PENDING:
        return "pending: completes later";
    case PF_ENOTSUP:
        return "not supported by this build";
    }
    return "not a puffinflow error code";
}

const char *
pf_error_name(int code)
{
    switch ((pf_error_t)code) {
    case PF_OK:
        return "PF_OK";
    case PF_EINVAL:
        return "PF_EINVAL";
    case PF_ENOMEM:
        return "PF_ENOMEM";
    case PF_EOPEN:
        return "PF_EOPEN";
    case PF_EFULL:
        return "PF_EFULL";
    case PF_ERATELIMIT:
        return "PF_ERATELIMIT";
    case PF_ETIMEDOUT:
        return "PF_ETIMEDOUT";
    case PF_EDEADLINE:
        return "PF_EDEADLINE";
    case PF_ECANCELED:
        return "PF_ECANCELED";
    case PF_EUNHEALTHY:
        return "PF_EUNHEALTHY";
    case PF_ENOTFOUND:
        return "PF_ENOTFOUND";
    case PF_EEXIST:
        return "PF_EEXIST";
    case PF_ESTATE:
        return "PF_ESTATE";
    case PF_ESYSTEM:
        return "PF_ESYSTEM";
    case PF_EFORMAT:
        return "PF_EFORMAT";
    case PF_EBUDGET:
        return "PF_EBUDGET";
    case PF_ERANGE:
        return "PF_ERANGE";
    case PF_PENDING:
        return "PF_PENDING";
    case PF_ENOTSUP:
        return "PF_ENOTSUP";
    }
    return NULL;
}

bool
pf_is_error_code(int code)
{
    return code != PF_OK && pf_error_name(code) != NULL;
}
