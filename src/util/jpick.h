/* jpick — several members of a jansson object, found in one pass over its members.
 *
 * Why: json_object_get() hashes the name it is given, some 160 instructions, and the engine reads
 * five to seven names of every event it applies; the events' objects are small (the engine's tree
 * keeps only what it reads: ev.h), so walking them once and comparing names costs a fraction.
 *
 * jpick() sets out[i] to the member of obj named names[i], or NULL when obj has no such member
 * or is not an object (NULL is fine). Borrowed references, valid while obj is. Cost: one pass over
 * obj's members, each compared with the names by first byte, then strcmp(). */
#ifndef ENGAGED_JPICK_H
#define ENGAGED_JPICK_H

#include <jansson.h>
#include <stddef.h>

void jpick(const json_t *obj, const char *const *names, size_t n, const json_t **out);

#endif
