/* log — structured log lines on stderr.
 *
 * One JSON object per line ({"ts":..., "level":..., "msg":..., fields}) so operators can grep or
 * ship the log as it is. Lines are written with one write(2) each, so concurrent threads never
 * interleave within a line. Access logging (one line per HTTP request) can be switched off for
 * benchmarks. */
#ifndef ENGAGED_LOG_H
#define ENGAGED_LOG_H

#include <stdbool.h>

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

void log_set_level(log_level min);
/* Logs msg with extra fields: fields is either NULL or a string of JSON members without braces
 * ("\"path\":\"/v1/track\",\"status\":200"), which the caller has escaped. */
void log_emit(log_level level, const char *msg, const char *fields);
void log_msg(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
