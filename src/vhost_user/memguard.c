/* SPDX-License-Identifier: MIT */
/* SIGBUS guard for shared mappings (see memguard.h). */
#include "memguard.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

struct slot {
	uintptr_t start; /* 0: free; written last on add, first on remove */
	size_t len;
	int hit;
	bool used; /* taken (under the mutex) */
};

static struct slot slots[MEMGUARD_SLOTS];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;

	(void)uc;
	if (si->si_code > 0) { /* from a fault, not from kill() */
		for (unsigned i = 0; i < MEMGUARD_SLOTS; i++) {
			uintptr_t start = __atomic_load_n(&slots[i].start,
							  __ATOMIC_ACQUIRE);
			size_t len = __atomic_load_n(&slots[i].len,
						     __ATOMIC_RELAXED);

			if (!start || a < start || a - start >= len)
				continue;
			/* The whole range: the file is gone for all of it. */
			if (mmap((void *)start, len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED |
					 MAP_NORESERVE,
				 -1, 0) == MAP_FAILED)
				break;
			__atomic_store_n(&slots[i].hit, 1, __ATOMIC_RELEASE);
			return; /* the access is retried, on zeroes */
		}
	}
	/* Not ours: what would have happened without the guard. */
	signal(sig, SIG_DFL);
	raise(sig);
}

/* 0 if our handler is in place (installing it over the default), else
 * -EBUSY. Under slots_lock. */
static int install(void)
{
	struct sigaction old, sa;

	if (sigaction(SIGBUS, NULL, &old) < 0)
		return -errno;
	if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == on_sigbus)
		return 0;
	if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)
		return -EBUSY;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	return sigaction(SIGBUS, &sa, NULL) < 0 ? -errno : 0;
}

int memguard_add(void *addr, size_t len)
{
	int err, slot = -ENOSPC;

	if (!addr || !len)
		return -EINVAL;
	pthread_mutex_lock(&slots_lock);
	err = install();
	if (err < 0) {
		pthread_mutex_unlock(&slots_lock);
		return err;
	}
	for (int i = 0; i < MEMGUARD_SLOTS; i++) {
		if (slots[i].used)
			continue;
		slots[i].used = true;
		__atomic_store_n(&slots[i].hit, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&slots[i].len, len, __ATOMIC_RELAXED);
		__atomic_store_n(&slots[i].start, (uintptr_t)addr,
				 __ATOMIC_RELEASE);
		slot = i;
		break;
	}
	pthread_mutex_unlock(&slots_lock);
	return slot;
}

bool memguard_hit(int slot)
{
	if (slot < 0 || slot >= MEMGUARD_SLOTS)
		return false;
	return __atomic_load_n(&slots[slot].hit, __ATOMIC_ACQUIRE);
}

void memguard_remove(int slot)
{
	if (slot < 0 || slot >= MEMGUARD_SLOTS)
		return;
	pthread_mutex_lock(&slots_lock);
	__atomic_store_n(&slots[slot].start, 0, __ATOMIC_RELEASE);
	slots[slot].len = 0;
	slots[slot].used = false;
	pthread_mutex_unlock(&slots_lock);
}

void memguard_thread_prepare(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGBUS);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}
