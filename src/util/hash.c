#include "util/hash.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* wyhash-style mixing: a 128-bit multiply folded to 64 bits. Fast on 64-bit machines and good
 * enough for hash tables; the constants are the usual odd 64-bit primes. */
static inline uint64_t mix(uint64_t a, uint64_t b) {
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t rd64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint64_t hash_seeded(const void *data, size_t n, uint64_t seed) {
    const unsigned char *p = data;
    const uint64_t k0 = 0xa0761d6478bd642full, k1 = 0xe7037ed1a0b428dbull,
                   k2 = 0x8ebc6af09c88c6e3ull;
    uint64_t h = seed ^ mix(seed ^ k0, k1) ^ n;
    while (n >= 16) {
        h = mix(rd64(p) ^ k1, rd64(p + 8) ^ h);
        p += 16;
        n -= 16;
    }
    unsigned char tail[16] = {0};
    memcpy(tail, p, n);
    h = mix(rd64(tail) ^ k2, rd64(tail + 8) ^ h ^ k0);
    return mix(h ^ k1, h ^ k2);
}

static uint64_t process_seed;
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;

static void seed_init(void) {
    hash_random(&process_seed, sizeof process_seed);
}

uint64_t hash64(const void *p, size_t n) {
    pthread_once(&seed_once, seed_init);
    return hash_seeded(p, n, process_seed);
}

uint64_t hash64_stable(const void *p, size_t n) {
    return hash_seeded(p, n, 0x2d358dccaa6c78a5ull);
}

void hash_random(void *out, size_t n) {
    unsigned char *p = out;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            perror("getrandom");
            abort();
        }
        p += r;
        n -= (size_t)r;
    }
}

void hash_uuid4(char out[37]) {
    unsigned char b[16];
    hash_random(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}
