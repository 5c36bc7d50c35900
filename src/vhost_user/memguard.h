/* SPDX-License-Identifier: MIT */
/*
 * SIGBUS guard for shared mappings of files another process controls (a
 * vhost-user front-end's guest RAM). Touching a MAP_SHARED page past the
 * end of its file raises SIGBUS; a front-end that shrinks its memory file
 * could kill the back-end that way. A guarded range that faults is
 * replaced, from the signal handler, by anonymous zeroed memory at the
 * same address, so the access completes and the process lives; the owner
 * sees memguard_hit() and drops the front-end.
 *
 * The handler is process-wide (the library's one SIGBUS handler) and is
 * installed only while SIGBUS has its default disposition: an application
 * with a SIGBUS handler of its own keeps it, and memguard_add() then fails
 * with -EBUSY. A SIGBUS that is not in a guarded range still kills the
 * process, as it would have without the guard. The faulting thread must not
 * block SIGBUS (memguard_thread_prepare()).
 */
#ifndef KILN_VHOST_USER_MEMGUARD_H
#define KILN_VHOST_USER_MEMGUARD_H

#include <stdbool.h>
#include <stddef.h>

#define MEMGUARD_SLOTS 256

/* Guards [addr, addr + len) (a mapping of the caller's). Returns a slot
 * (>= 0) for memguard_hit/memguard_remove, -EBUSY if the application has
 * its own SIGBUS handler, -ENOSPC if every slot is taken. */
int memguard_add(void *addr, size_t len);

/* True once the slot's range faulted (and became anonymous memory). */
bool memguard_hit(int slot);

/* Stops guarding the slot's range; call before unmapping it. A negative
 * slot is ignored. */
void memguard_remove(int slot);

/* Unblocks SIGBUS in the calling thread: a blocked SIGBUS from a fault
 * kills the process whatever the handler. */
void memguard_thread_prepare(void);

#endif
