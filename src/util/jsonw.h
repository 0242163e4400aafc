/* jsonw — writing jansson values as compact JSON, fast and with numbers as people wrote them.
 *
 * Why not json_dumps(): jansson prints reals with 17 significant digits, so a price of 19.99 is
 * stored and returned as 19.989999999999998; and its dumper costs about twice what this one does on
 * the event path (measured with callgrind, docs/benchmarks.md). jsonw prints each real with the
 * fewest digits that read back as the same double (15, 16 or 17), integers exactly, object members
 * in insertion order, and escapes strings as JSON requires (jansson has already checked they are
 * UTF-8). Reals that are integral keep a ".0" so they read back as reals.
 *
 * Ownership: writes into the caller's buf; the value is only read. Returns BUF_OK or the buf error
 * (BUF_TOOBIG when the cap is reached: the buf then holds a truncated prefix the caller discards).
 * Recursion depth is the value's nesting depth, which the callers bound (EV_MAX_DEPTH, jansson's
 * own parse limit). */
#ifndef ENGAGED_JSONW_H
#define ENGAGED_JSONW_H

#include <jansson.h>

#include "util/buf.h"

int jsonw_value(buf *b, const json_t *v);
/* Writes a double the same way jsonw_value() writes a real. */
int jsonw_real(buf *b, double d);
/* Writes d rounded to `decimals` (0..9) places, trailing zeros dropped but one kept after the
 * point ("1.0", "435.25", "0.333333"): for answers whose numbers need no more (scores, prices),
 * without printf. |d| at or above 1e12, or not finite, falls back to jsonw_real(). */
int jsonw_fixed(buf *b, double d, int decimals);

#endif
