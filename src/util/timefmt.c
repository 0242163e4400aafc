#include "util/timefmt.h"

#include <string.h>

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Howard Hinnant's algorithm).
 */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yy + (*m <= 2));
}

static bool digits(const char *s, size_t n, size_t at, size_t count, int *out) {
    if (at + count > n) return false;
    int v = 0;
    for (size_t i = 0; i < count; i++) {
        char c = s[at + i];
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return true;
}

static bool leap(int y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

bool tf_parse(const char *s, size_t n, int64_t *ms) {
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h = 0, mi = 0, se = 0, frac = 0;
    if (!digits(s, n, 0, 4, &y) || n < 10 || s[4] != '-' || !digits(s, n, 5, 2, &mo) ||
        s[7] != '-' || !digits(s, n, 8, 2, &d))
        return false;
    if (y < 1 || mo < 1 || mo > 12 || d < 1) return false;
    if (d > mdays[mo - 1] + (mo == 2 && leap(y))) return false;
    size_t i = 10;
    int64_t offset_min = 0;
    if (i < n) {
        if (s[i] != 'T' && s[i] != 't' && s[i] != ' ') return false;
        i++;
        if (!digits(s, n, i, 2, &h) || i + 2 >= n || s[i + 2] != ':' ||
            !digits(s, n, i + 3, 2, &mi))
            return false;
        i += 5;
        if (i < n && s[i] == ':') {
            if (!digits(s, n, i + 1, 2, &se)) return false;
            i += 3;
        }
        if (h > 23 || mi > 59 || se > 60)
            return false; /* 60: a leap second, folded into the next */
        if (i < n && (s[i] == '.' || s[i] == ',')) {
            i++;
            size_t start = i;
            int scale = 100;
            while (i < n && s[i] >= '0' && s[i] <= '9') {
                frac += (s[i] - '0') * scale;
                scale /= 10;
                i++;
            }
            if (i == start || i - start > 9) return false;
        }
        if (i >= n) return false; /* a time needs a zone: local time would be a guess */
        if (s[i] == 'Z' || s[i] == 'z') {
            i++;
        } else if (s[i] == '+' || s[i] == '-') {
            int sign = s[i] == '-' ? -1 : 1, oh, om = 0;
            if (!digits(s, n, i + 1, 2, &oh)) return false;
            i += 3;
            if (i < n && s[i] == ':') {
                i++;
                if (i >= n) return false; /* "+02:" — a colon promises minutes */
            }
            if (i < n) {
                if (!digits(s, n, i, 2, &om)) return false;
                i += 2;
            }
            if (oh > 23 || om > 59) return false;
            offset_min = sign * (oh * 60 + om);
        } else {
            return false;
        }
        if (i != n) return false;
    }
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + se - offset_min * 60;
    *ms = secs * 1000 + frac;
    return true;
}

/* The last second this thread wrote, with its text up to the seconds: an event is written with
 * two or three times of the same second (receivedAt is every event's of a batch), and the date
 * arithmetic and digits cost some 450 instructions a call. */
static __thread struct {
    int64_t secs;
    bool valid;
    char text[20]; /* "YYYY-MM-DDTHH:MM:SS" */
} last_second;

char *tf_format(int64_t ms, char out[TF_LEN]) {
    /* The range RFC 3339 can write: 0001-01-01 to 9999-12-31. Clamping first also keeps the
     * arithmetic below from overflowing on extreme inputs. */
    const int64_t min_ms = -62135596800000, max_ms = 253402300799999;
    if (ms < min_ms) ms = min_ms;
    if (ms > max_ms) ms = max_ms;
    int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    int milli = (int)(ms - secs * 1000);
    if (last_second.valid && last_second.secs == secs) {
        memcpy(out, last_second.text, 19);
        out[19] = '.';
        out[20] = (char)('0' + milli / 100);
        out[21] = (char)('0' + milli / 10 % 10);
        out[22] = (char)('0' + milli % 10);
        out[23] = 'Z';
        out[24] = '\0';
        return out;
    }
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int rem = (int)(secs - days * 86400);
    int y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    /* By hand rather than snprintf: this runs several times per event. */
    static const char layout[] = "0000-00-00T00:00:00.000Z";
    const unsigned fields[][3] = {{0, 4, (unsigned)y},
                                  {5, 2, m},
                                  {8, 2, d},
                                  {11, 2, (unsigned)rem / 3600},
                                  {14, 2, (unsigned)rem / 60 % 60},
                                  {17, 2, (unsigned)rem % 60},
                                  {20, 3, (unsigned)milli}};
    memcpy(out, layout, sizeof layout);
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
        for (unsigned i = fields[f][1], v = fields[f][2]; i-- > 0; v /= 10)
            out[fields[f][0] + i] = (char)('0' + v % 10);
    memcpy(last_second.text, out, 19);
    last_second.secs = secs;
    last_second.valid = true;
    return out;
}
