#include "util/jsonw.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int jsonw_fixed(buf *b, double d, int decimals) {
    static const double scale[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
    if (!isfinite(d) || fabs(d) >= 1e12 || decimals < 0 || decimals > 9) return jsonw_real(b, d);
    int64_t v = llround(fabs(d) * scale[decimals]);
    bool negative = d < 0 && v != 0; /* no "-0.0" */
    char s[48], *end = s + sizeof s, *p = end;
    int frac = decimals;
    /* Fraction digits, least significant first, dropping trailing zeros; then the integer. */
    bool any = false;
    for (; frac > 0; frac--, v /= 10) {
        int digit = (int)(v % 10);
        if (digit || any) *--p = (char)('0' + digit), any = true;
    }
    if (!any) *--p = '0';
    *--p = '.';
    do
        *--p = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    if (negative) *--p = '-';
    return buf_append(b, p, (size_t)(end - p));
}

int jsonw_real(buf *b, double d) {
    char s[40];
    if (!isfinite(d)) return buf_puts(b, "null"); /* JSON has no NaN or infinity */
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(s, sizeof s, "%.*g", prec, d);
        if (prec == 17 || strtod(s, NULL) == d) break;
    }
    /* printf writes exponents as "e-07" and "e+308"; JSON reads "e-7" and "e308" the same. */
    char *e = strchr(s, 'e');
    if (e) {
        char *from = e + 1, *to = e + 1;
        if (*from == '-')
            *to++ = *from++;
        else if (*from == '+')
            from++;
        while (*from == '0' && from[1])
            from++;
        while ((*to++ = *from++)) {
        }
        n = (int)strlen(s);
    }
    /* Keep it a real: "19" would read back as an integer. */
    if (!strpbrk(s, ".eEn")) {
        s[n++] = '.';
        s[n++] = '0';
        s[n] = '\0';
    }
    return buf_append(b, s, (size_t)n);
}

static int write_int(buf *b, json_int_t v) {
    char s[24], *p = s + sizeof s;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0) *--p = '-';
    return buf_append(b, p, (size_t)(s + sizeof s - p));
}

static int write_string(buf *b, const char *s, size_t n) {
    int rc = buf_putc(b, '"');
    if (!rc) rc = buf_json_escape(b, s, n);
    if (!rc) rc = buf_putc(b, '"');
    return rc;
}

int jsonw_value(buf *b, const json_t *v) {
    int rc = BUF_OK;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *member;
        int first = 1;
        rc = buf_putc(b, '{');
        json_object_foreach((json_t *)v, key, member) {
            if (rc) return rc;
            if (!first) rc = buf_putc(b, ',');
            first = 0;
            if (!rc) rc = write_string(b, key, strlen(key));
            if (!rc) rc = buf_putc(b, ':');
            if (!rc) rc = jsonw_value(b, member);
        }
        return rc ? rc : buf_putc(b, '}');
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *item;
        rc = buf_putc(b, '[');
        json_array_foreach(v, i, item) {
            if (rc) return rc;
            if (i) rc = buf_putc(b, ',');
            if (!rc) rc = jsonw_value(b, item);
        }
        return rc ? rc : buf_putc(b, ']');
    }
    case JSON_STRING:
        return write_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return write_int(b, json_integer_value(v));
    case JSON_REAL:
        return jsonw_real(b, json_real_value(v));
    case JSON_TRUE:
        return buf_puts(b, "true");
    case JSON_FALSE:
        return buf_puts(b, "false");
    case JSON_NULL:
        return buf_puts(b, "null");
    }
    return rc;
}
