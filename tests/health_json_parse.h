/* A small strict JSON parser for tests that read back the JSON the library
 * writes (RFC 8259): no trailing commas, no duplicate keys, only the
 * escapes JSON has, no raw control characters in strings, numbers in
 * JSON's grammar, valid UTF-8, nothing after the value. jc_parse returns
 * NULL for anything else, so a test that parses the output proves it is
 * JSON. Header-only (static functions); uses libc's allocator, not the
 * library's. */
#ifndef PF_TESTS_HEALTH_JSON_PARSE_H
#define PF_TESTS_HEALTH_JSON_PARSE_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef enum jc_type {
    JC_NULL,
    JC_FALSE,
    JC_TRUE,
    JC_NUMBER,
    JC_STRING,
    JC_ARRAY,
    JC_OBJECT
} jc_type_t;

typedef struct jc_value {
    jc_type_t type;
    double num;                /* JC_NUMBER */
    char *str;                 /* JC_STRING, NUL-terminated UTF-8 */
    size_t n;                  /* members or elements */
    char **keys;               /* JC_OBJECT, in document order */
    struct jc_value **items;   /* JC_ARRAY elements, JC_OBJECT values */
} jc_value_t;

typedef struct jc_parser {
    const char *p;
    int depth;
} jc_parser_t;

static jc_value_t *jc_value(jc_parser_t *ps);

static void
jc_free(jc_value_t *v)
{
    size_t i;

    if (v == NULL) {
        return;
    }
    for (i = 0; i < v->n; i++) {
        if (v->keys != NULL) {
            free(v->keys[i]);
        }
        jc_free(v->items[i]);
    }
    free(v->keys);
    free(v->items);
    free(v->str);
    free(v);
}

static void
jc_ws(jc_parser_t *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' ||
           *ps->p == '\r') {
        ps->p++;
    }
}

static int
jc_hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    int i;

    for (i = 0; i < 4; i++) {
        char c = s[i];

        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (unsigned)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v |= (unsigned)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v |= (unsigned)(c - 'A' + 10);
        } else {
            return -1;
        }
    }
    *out = v;
    return 0;
}

static size_t
jc_put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t
jc_utf8_len(const unsigned char *s)
{
    size_t need;
    size_t i;
    unsigned cp;

    if (s[0] < 0x80) {
        return 1;
    }
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        need = 2;
        cp = s[0] & 0x1F;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        need = 3;
        cp = s[0] & 0x0F;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        need = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    for (i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
        return 0;
    }
    return need;
}

/* A string literal at ps->p (on the opening quote); NULL on error. */
static char *
jc_string(jc_parser_t *ps)
{
    size_t cap = strlen(ps->p) + 1;
    char *out = malloc(cap);
    size_t len = 0;

    if (out == NULL || *ps->p != '"') {
        free(out);
        return NULL;
    }
    ps->p++;
    for (;;) {
        unsigned char c = (unsigned char)*ps->p;

        if (c == '"') {
            ps->p++;
            out[len] = '\0';
            return out;
        }
        if (c < 0x20) { /* includes the terminating NUL */
            break;
        }
        if (c == '\\') {
            unsigned cp;

            ps->p++;
            switch (*ps->p) {
            case '"':
            case '\\':
            case '/':
                out[len++] = *ps->p;
                break;
            case 'b':
                out[len++] = '\b';
                break;
            case 'f':
                out[len++] = '\f';
                break;
            case 'n':
                out[len++] = '\n';
                break;
            case 'r':
                out[len++] = '\r';
                break;
            case 't':
                out[len++] = '\t';
                break;
            case 'u':
                if (jc_hex4(ps->p + 1, &cp) != 0) {
                    goto fail;
                }
                ps->p += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;

                    if (ps->p[1] != '\\' || ps->p[2] != 'u' ||
                        jc_hex4(ps->p + 3, &lo) != 0 || lo < 0xDC00 ||
                        lo > 0xDFFF) {
                        goto fail;
                    }
                    ps->p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    goto fail;
                }
                len += jc_put_utf8(out + len, cp);
                break;
            default:
                goto fail;
            }
            ps->p++;
            continue;
        }
        {
            size_t n = jc_utf8_len((const unsigned char *)ps->p);

            if (n == 0) {
                goto fail;
            }
            memcpy(out + len, ps->p, n);
            len += n;
            ps->p += n;
        }
    }
fail:
    free(out);
    return NULL;
}

static bool
jc_digit(char c)
{
    return c >= '0' && c <= '9';
}

static jc_value_t *
jc_new(jc_type_t t)
{
    jc_value_t *v = calloc(1, sizeof(*v));

    if (v != NULL) {
        v->type = t;
    }
    return v;
}

static jc_value_t *
jc_number(jc_parser_t *ps)
{
    const char *start = ps->p;
    const char *s = ps->p;
    jc_value_t *v;

    if (*s == '-') {
        s++;
    }
    if (*s == '0') {
        s++;
    } else if (*s >= '1' && *s <= '9') {
        while (jc_digit(*s)) {
            s++;
        }
    } else {
        return NULL;
    }
    if (*s == '.') {
        s++;
        if (!jc_digit(*s)) {
            return NULL;
        }
        while (jc_digit(*s)) {
            s++;
        }
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') {
            s++;
        }
        if (!jc_digit(*s)) {
            return NULL;
        }
        while (jc_digit(*s)) {
            s++;
        }
    }
    v = jc_new(JC_NUMBER);
    if (v != NULL) {
        v->num = strtod(start, NULL);
    }
    ps->p = s;
    return v;
}

static bool
jc_push(jc_value_t *v, char *key, jc_value_t *item)
{
    jc_value_t **items = realloc(v->items, (v->n + 1) * sizeof(*items));

    if (items == NULL) {
        return false;
    }
    v->items = items;
    if (v->type == JC_OBJECT) {
        char **keys = realloc(v->keys, (v->n + 1) * sizeof(*keys));

        if (keys == NULL) {
            return false;
        }
        v->keys = keys;
        v->keys[v->n] = key;
    }
    v->items[v->n++] = item;
    return true;
}

static jc_value_t *
jc_container(jc_parser_t *ps, bool object)
{
    jc_value_t *v = jc_new(object ? JC_OBJECT : JC_ARRAY);
    char close = object ? '}' : ']';

    if (v == NULL || ++ps->depth > 64) {
        goto fail;
    }
    ps->p++;
    jc_ws(ps);
    if (*ps->p == close) {
        ps->p++;
        ps->depth--;
        return v;
    }
    for (;;) {
        char *key = NULL;
        jc_value_t *item;
        size_t i;

        jc_ws(ps);
        if (object) {
            key = jc_string(ps);
            if (key == NULL) {
                goto fail;
            }
            for (i = 0; i < v->n; i++) {
                if (strcmp(v->keys[i], key) == 0) {
                    free(key); /* duplicate key */
                    goto fail;
                }
            }
            jc_ws(ps);
            if (*ps->p != ':') {
                free(key);
                goto fail;
            }
            ps->p++;
        }
        item = jc_value(ps);
        if (item == NULL || !jc_push(v, key, item)) {
            free(key);
            jc_free(item);
            goto fail;
        }
        jc_ws(ps);
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p == close) {
            ps->p++;
            ps->depth--;
            return v;
        }
        goto fail;
    }
fail:
    jc_free(v);
    return NULL;
}

static jc_value_t *
jc_value(jc_parser_t *ps)
{
    jc_value_t *v;

    jc_ws(ps);
    switch (*ps->p) {
    case '{':
        return jc_container(ps, true);
    case '[':
        return jc_container(ps, false);
    case '"':
        v = jc_new(JC_STRING);
        if (v != NULL) {
            v->str = jc_string(ps);
            if (v->str == NULL) {
                jc_free(v);
                return NULL;
            }
        }
        return v;
    case 't':
        if (strncmp(ps->p, "true", 4) == 0) {
            ps->p += 4;
            return jc_new(JC_TRUE);
        }
        return NULL;
    case 'f':
        if (strncmp(ps->p, "false", 5) == 0) {
            ps->p += 5;
            return jc_new(JC_FALSE);
        }
        return NULL;
    case 'n':
        if (strncmp(ps->p, "null", 4) == 0) {
            ps->p += 4;
            return jc_new(JC_NULL);
        }
        return NULL;
    default:
        return jc_number(ps);
    }
}

/* Parse text; NULL unless it is exactly one valid JSON value. */
static jc_value_t *
jc_parse(const char *text)
{
    jc_parser_t ps = {text, 0};
    jc_value_t *v = jc_value(&ps);

    if (v == NULL) {
        return NULL;
    }
    jc_ws(&ps);
    if (*ps.p != '\0') {
        jc_free(v);
        return NULL;
    }
    return v;
}

/* The member called key of an object, or NULL. */
static const jc_value_t *
jc_get(const jc_value_t *obj, const char *key)
{
    size_t i;

    if (obj == NULL || obj->type != JC_OBJECT) {
        return NULL;
    }
    for (i = 0; i < obj->n; i++) {
        if (strcmp(obj->keys[i], key) == 0) {
            return obj->items[i];
        }
    }
    return NULL;
}

/* A string value's text, or "(not a string)". */
static const char *
jc_str(const jc_value_t *v)
{
    return v != NULL && v->type == JC_STRING ? v->str : "(not a string)";
}

/* True for "YYYY-MM-DDTHH:MM:SS.mmmZ". */
static bool
jc_is_iso_time(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    size_t i;

    if (strlen(s) != sizeof(shape) - 1) {
        return false;
    }
    for (i = 0; i < sizeof(shape) - 1; i++) {
        if (shape[i] == 'd' ? !jc_digit(s[i]) : s[i] != shape[i]) {
            return false;
        }
    }
    return true;
}

#endif /* PF_TESTS_HEALTH_JSON_PARSE_H */
