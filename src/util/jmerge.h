/* jmerge — JSON Merge Patch (RFC 7396), the PATCH semantics of every engaged resource.
 *
 * jmerge_patch() merges patch, an object, into target, an object: a member set to null is
 * removed, an object member is merged into the target's (created when the target's is absent or
 * not an object), anything else replaces the target's member. Values are copied from patch, so
 * target never shares a value with it.
 *
 * Returns 0, or -1 when memory runs out (target then holds part of the patch). Recursion depth is
 * the patch's nesting depth, which callers bound before (EV_MAX_DEPTH). */
#ifndef ENGAGED_JMERGE_H
#define ENGAGED_JMERGE_H

#include <jansson.h>

int jmerge_patch(json_t *target, const json_t *patch);

#endif
