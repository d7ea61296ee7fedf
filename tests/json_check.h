/* A strict JSON (RFC 8259) validator for the metrics tests, header-only.
 * It accepts exactly one value with optional surrounding whitespace, valid
 * UTF-8 in strings, no control characters, only the standard escapes, and
 * numbers in JSON's grammar (so no NaN, no Infinity, no leading zeros). */
#ifndef PF_TESTS_JSON_CHECK_H
#define PF_TESTS_JSON_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct json_cur {
    const char *p;
    int depth;
} json_cur_t;

static inline bool json_value(json_cur_t *c);

static inline void
json_ws(json_cur_t *c)
{
    while (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r') {
        c->p++;
    }
}

static inline bool
json_hex4(const char *p)
{
    int i;

    for (i = 0; i < 4; i++) {
        char h = p[i];

        if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') ||
              (h >= 'A' && h <= 'F'))) {
            return false;
        }
    }
    return true;
}

static inline bool
json_string(json_cur_t *c)
{
    const unsigned char *p = (const unsigned char *)c->p;

    if (*p != '"') {
        return false;
    }
    p++;
    while (*p != '"') {
        unsigned ch = *p;

        if (ch == '\0' || ch < 0x20) {
            return false;
        }
        if (ch == '\\') {
            p++;
            if (*p == 'u') {
                if (!json_hex4((const char *)p + 1)) {
                    return false;
                }
                p += 5;
                continue;
            }
            if (strchr("\"\\/bfnrt", *p) == NULL || *p == '\0') {
                return false;
            }
            p++;
            continue;
        }
        if (ch < 0x80) {
            p++;
            continue;
        }
        {
            size_t len, k;
            unsigned lo = 0x80, hi = 0xbf;

            if (ch >= 0xc2 && ch <= 0xdf) {
                len = 2;
            } else if (ch >= 0xe0 && ch <= 0xef) {
                len = 3;
                lo = ch == 0xe0 ? 0xa0 : 0x80;
                hi = ch == 0xed ? 0x9f : 0xbf;
            } else if (ch >= 0xf0 && ch <= 0xf4) {
                len = 4;
                lo = ch == 0xf0 ? 0x90 : 0x80;
                hi = ch == 0xf4 ? 0x8f : 0xbf;
            } else {
                return false;
            }
            if (p[1] < lo || p[1] > hi) {
                return false;
            }
            for (k = 2; k < len; k++) {
                if ((p[k] & 0xc0) != 0x80) {
                    return false;
                }
            }
            p += len;
        }
    }
    c->p = (const char *)p + 1;
    return true;
}

static inline bool
json_number(json_cur_t *c)
{
    const char *p = c->p;

    if (*p == '-') {
        p++;
    }
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (*p >= '0' && *p <= '9') {
            p++;
        }
    } else {
        return false;
    }
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9')) {
            return false;
        }
        while (*p >= '0' && *p <= '9') {
            p++;
        }
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') {
            p++;
        }
        if (!(*p >= '0' && *p <= '9')) {
            return false;
        }
        while (*p >= '0' && *p <= '9') {
            p++;
        }
    }
    c->p = p;
    return true;
}

static inline bool
json_word(json_cur_t *c, const char *w)
{
    size_t n = strlen(w);

    if (strncmp(c->p, w, n) != 0) {
        return false;
    }
    c->p += n;
    return true;
}

static inline bool
json_container(json_cur_t *c, char open, char close, bool object)
{
    if (*c->p != open || ++c->depth > 64) {
        return false;
    }
    c->p++;
    json_ws(c);
    if (*c->p == close) {
        c->p++;
        c->depth--;
        return true;
    }
    for (;;) {
        json_ws(c);
        if (object) {
            if (!json_string(c)) {
                return false;
            }
            json_ws(c);
            if (*c->p != ':') {
                return false;
            }
            c->p++;
        }
        if (!json_value(c)) {
            return false;
        }
        json_ws(c);
        if (*c->p == ',') {
            c->p++;
            continue;
        }
        if (*c->p != close) {
            return false;
        }
        c->p++;
        c->depth--;
        return true;
    }
}

static inline bool
json_value(json_cur_t *c)
{
    json_ws(c);
    switch (*c->p) {
    case '{':
        return json_container(c, '{', '}', true);
    case '[':
        return json_container(c, '[', ']', false);
    case '"':
        return json_string(c);
    case 't':
        return json_word(c, "true");
    case 'f':
        return json_word(c, "false");
    case 'n':
        return json_word(c, "null");
    default:
        return json_number(c);
    }
}

/* True when text is exactly one valid JSON value. */
static inline bool
json_valid(const char *text)
{
    json_cur_t c = {text, 0};

    if (!json_value(&c)) {
        return false;
    }
    json_ws(&c);
    return *c.p == '\0';
}

#endif /* PF_TESTS_JSON_CHECK_H */
