/* clock — the one clock engaged reads.
 *
 * Everything that depends on time (receivedAt, deduplication windows, rate limits, and the waits,
 * deadlines and retention of later subsystems) asks clock_now_ms(), never time() directly. In test
 * mode (ENGAGED_TEST_CLOCK=1 / --test-clock) the clock stands still until a test sets or advances
 * it through the admin API, so a 24-hour wait is tested in milliseconds. Monotonic readings for
 * measuring durations are a separate call and never follow the test clock.
 *
 * Thread-safe: reads and writes are atomic. */
#ifndef ENGAGED_CLOCK_H
#define ENGAGED_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

/* Switches to test mode with the clock at start_ms (0: the real time now). */
void clock_set_test_mode(int64_t start_ms);
bool clock_is_test_mode(void);
/* Wall-clock milliseconds since the epoch: the real time, or the test clock. */
int64_t clock_now_ms(void);
/* Test mode only: set the clock to ms, or move it forward by delta_ms. Return false in real mode,
 * or when asked to move the clock backwards (time in engaged never goes back). */
bool clock_set_ms(int64_t ms);
bool clock_advance_ms(int64_t delta_ms);
/* Monotonic nanoseconds, for durations (latency metrics, timeouts); unaffected by test mode. */
uint64_t clock_mono_ns(void);

#endif
