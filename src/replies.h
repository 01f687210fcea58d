/* replies.h - hiredis reply objects from a per-connection arena.
 *
 * hiredis 0.14's reader builds a reply with its default object functions:
 * one calloc per reply and per array element, one malloc per string, and
 * freeReplyObject frees them one by one. The store reads thousands of
 * elements per batch (a fetch's HGETALLs and HMGETs, a transaction's QUEUED
 * and EXEC replies), so it gives each of its connections these functions
 * instead: every object of a reply is carved from the connection's arena (a
 * list of chunks), and the arena starts over from its first chunk once no
 * reply of the connection is held any more (each reply is read, used and
 * released before the next one, so that is after every reply). The objects
 * are ordinary redisReply structs: code reads them as before, and releases
 * them with replies_free, never with freeReplyObject (store.c maps the one
 * to the other). */
#ifndef FIDELIO_REPLIES_H
#define FIDELIO_REPLIES_H

#include <hiredis/hiredis.h>

/* Give connection c's reader the arena's object functions (call before its
 * first command). 0, or -1 when out of memory (c is unchanged). */
int replies_attach(redisContext *c);

/* Release a reply of an attached connection (NULL is ignored). */
void replies_free(void *reply);

/* redisFree for a connection, attached or not; the arena goes with the
 * last reply still held (at once when none is). */
void replies_context_free(redisContext *c);

#endif
