/* hash — non-cryptographic hashing for in-memory tables, and random identifiers.
 *
 * hash64() is a fast 64-bit hash (seeded per process, so an attacker cannot precompute collisions
 * from outside); use it for table slots, never for anything stored or compared across processes.
 * The stable variant hash64_stable() is the same function with a fixed seed. */
#ifndef ENGAGED_HASH_H
#define ENGAGED_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t hash64(const void *p, size_t n);
uint64_t hash64_stable(const void *p, size_t n);
/* Fills out with n cryptographically random bytes (getrandom); aborts if the kernel cannot. */
void hash_random(void *out, size_t n);
/* Writes a random RFC 4122 version-4 UUID, lower-case, into out (37 bytes with the NUL). */
void hash_uuid4(char out[37]);

#endif
