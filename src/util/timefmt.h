/* timefmt — RFC 3339 / ISO 8601 timestamps <-> milliseconds since the Unix epoch (UTC).
 *
 * Every timestamp engaged writes is RFC 3339 UTC with milliseconds ("2024-05-01T10:00:00.000Z"). It
 * reads what clients send: a date and time with 'T' or ' ' between them, optional fractional
 * seconds (any number of digits; kept to the millisecond), and 'Z', '+hh:mm', '+hhmm' or '+hh' as
 * the zone. A date alone ("2024-05-01") is midnight UTC. Anything else, including out-of-range
 * fields and trailing bytes, is refused. Pure functions, no allocation, no locale. */
#ifndef ENGAGED_TIMEFMT_H
#define ENGAGED_TIMEFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room for the longest string tf_format() writes, with its NUL. */
#define TF_LEN 32
/* The length of every string tf_format() writes. */
#define TF_TEXT_LEN 24

/* Parses s[0..n). Returns true and sets *ms on success. Years 0001..9999 only. */
bool tf_parse(const char *s, size_t n, int64_t *ms);
/* Writes ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" (TF_TEXT_LEN bytes and a NUL; ms is clamped to years
 * 0001..9999) into out (TF_LEN bytes); returns out. Thread-safe: each thread keeps the text of the
 * last second it wrote, so times of one second in a row cost a copy. */
char *tf_format(int64_t ms, char out[TF_LEN]);

#endif
