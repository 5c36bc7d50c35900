/* SPDX-License-Identifier: MIT */
/*
 * Pools (kiln_pool_*): fill_parallel filler threads keep `target` members
 * ready, one reaper thread destroys what was released or sat idle too
 * long; claimers only take a member off the ready list. One mutex guards
 * the lists and counters; three condition variables (on the monotonic
 * clock) wake fillers (a slot is free, or the backoff is over), claimers
 * (a member or an error arrived) and the reaper (something to destroy).
 *
 * A refill that fails is counted, logged, kept as the pool's last error
 * and backs off (100 ms doubling to 10 s); while the last refill failed,
 * a claimer that would wait gets that error instead, so a pool whose
 * members cannot boot answers at once rather than never.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sandbox/pool.h"
#include "util/clock.h"
#include "util/thread.h"
#include "virtio/blk.h"
#include "virtio/device_table.h"
#include "virtio/vsock.h"
#include "vm/config.h"

#define POOL_MAX_TARGET	  64
#define POOL_MAX_PARALLEL 16
#define BACKOFF_FIRST_MS  100
#define BACKOFF_MAX_MS	  10000

enum { POOL_SANDBOXES, POOL_VMS };

struct member {
	void *m;
	int64_t ready_at;
	struct member *next;
};

struct kiln_pool {
	struct pool_source src;
	struct kiln_pool_opts o;
	struct kiln_log user_log; /* the caller's */
	struct kiln_log log;	  /* ours: forwards, keeps the last error */

	pthread_mutex_t lock;
	pthread_cond_t fill_cv, claim_cv, reap_cv;
	struct member *ready, *ready_tail; /* FIFO: oldest first */
	struct member *reap;		   /* to destroy */
	unsigned nready, filling, in_use, waiters;
	unsigned releasing; /* on the reap list or being destroyed */
	uint64_t acquired, booted, failures;
	unsigned failing;
	int64_t backoff_until;
	int last_error;
	char last_message[256];
	bool closing;
	bool reaper_stop; /* destroy handed it the last members */

	pthread_mutex_t msg_lock; /* the newest error message logged */
	char newest_error[256];

	int kind; /* POOL_SANDBOXES or POOL_VMS */

	pthread_t fillers[POOL_MAX_PARALLEL], reaper;
	unsigned nfillers;
	bool reaper_started;
};

static void pool_log_fn(void *opaque, enum kiln_log_level level,
			const char *msg)
{
	struct kiln_pool *p = opaque;

	if (level == KILN_LOG_ERROR) {
		pthread_mutex_lock(&p->msg_lock);
		snprintf(p->newest_error, sizeof(p->newest_error), "%s", msg);
		pthread_mutex_unlock(&p->msg_lock);
	}
	if (p->user_log.fn && level <= p->user_log.max_level)
		p->user_log.fn(p->user_log.opaque, level, msg);
}

const struct kiln_log *pool_log(struct kiln_pool *p)
{
	return &p->log;
}

KILN_API void kiln_pool_opts_init(struct kiln_pool_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->target = 2;
	o->fill_parallel = 1;
	o->boot_timeout_ms = 30000;
	o->empty = KILN_POOL_WAIT;
}

static void deadline_ts(int64_t deadline_ms, struct timespec *ts)
{
	ts->tv_sec = (time_t)(deadline_ms / 1000);
	ts->tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
}

int pool_new(const struct pool_source *src, const struct kiln_pool_opts *o,
	     const struct kiln_log *log, struct kiln_pool **out)
{
	struct kiln_pool_opts opts;
	pthread_condattr_t ca;
	struct kiln_pool *p;

	*out = NULL;
	kiln_pool_opts_init(&opts);
	if (o) {
		/* a caller built against a smaller struct: the rest stays
		 * default */
		size_t n = o->size < sizeof(opts) ? o->size : sizeof(opts);

		if (n < sizeof(size_t) + sizeof(unsigned)) {
			if (src->free_ctx)
				src->free_ctx(src->ctx);
			return kiln_errorf(log, -EINVAL,
					   "pool: options not initialised "
					   "(kiln_pool_opts_init)");
		}
		memcpy(&opts, o, n);
		opts.size = sizeof(opts);
	}
	if (opts.target < 1 || opts.target > POOL_MAX_TARGET ||
	    opts.fill_parallel < 1 || opts.fill_parallel > POOL_MAX_PARALLEL ||
	    opts.boot_timeout_ms <= 0 ||
	    (unsigned)opts.empty > (unsigned)KILN_POOL_COLD) {
		if (src->free_ctx)
			src->free_ctx(src->ctx);
		return kiln_errorf(log, -EINVAL,
				   "pool: target %u (1..%d), fill_parallel %u "
				   "(1..%d), boot timeout %d ms (> 0), empty "
				   "policy %d: out of range",
				   opts.target, POOL_MAX_TARGET,
				   opts.fill_parallel, POOL_MAX_PARALLEL,
				   opts.boot_timeout_ms, (int)opts.empty);
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		if (src->free_ctx)
			src->free_ctx(src->ctx);
		return -ENOMEM;
	}
	p->src = *src;
	p->o = opts;
	if (log)
		p->user_log = *log;
	p->log.fn = pool_log_fn;
	p->log.opaque = p;
	p->log.max_level =
		p->user_log.fn ? p->user_log.max_level : KILN_LOG_ERROR;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->msg_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->fill_cv, &ca);
	pthread_cond_init(&p->claim_cv, &ca);
	pthread_cond_init(&p->reap_cv, &ca);
	pthread_condattr_destroy(&ca);
	*out = p;
	return 0;
}

void pool_set_ctx(struct kiln_pool *p, void *ctx)
{
	p->src.ctx = ctx;
}

/* ---- the threads ---- */

static void push_reap(struct kiln_pool *p, void *m)
{
	struct member *e = malloc(sizeof(*e));

	if (!e) {
		/* no memory for the list: destroy it here instead */
		pthread_mutex_unlock(&p->lock);
		p->src.destroy(p->src.ctx, m);
		pthread_mutex_lock(&p->lock);
		return;
	}
	e->m = m;
	e->next = p->reap;
	p->reap = e;
	p->releasing++;
	pthread_cond_signal(&p->reap_cv);
}

/* Appends a new member to the ready list (locked): 0, or -ENOMEM. */
static int ready_append(struct kiln_pool *p, void *m)
{
	struct member *e = malloc(sizeof(*e));

	if (!e)
		return -ENOMEM;
	e->m = m;
	e->ready_at = now_ms();
	e->next = NULL;
	if (p->ready_tail)
		p->ready_tail->next = e;
	else
		p->ready = e;
	p->ready_tail = e;
	p->nready++;
	p->booted++;
	/* its idle deadline, for the reaper */
	if (p->o.idle_lifetime_ms)
		pthread_cond_signal(&p->reap_cv);
	return 0;
}

static void *filler_main(void *arg)
{
	struct kiln_pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		int64_t now = now_ms();
		void *m = NULL;
		int err;

		if (p->closing)
			break;
		if (p->nready + p->filling >= p->o.target) {
			pthread_cond_wait(&p->fill_cv, &p->lock);
			continue;
		}
		if (p->backoff_until > now) {
			struct timespec ts;

			deadline_ts(p->backoff_until, &ts);
			pthread_cond_timedwait(&p->fill_cv, &p->lock, &ts);
			continue;
		}
		p->filling++;
		pthread_mutex_unlock(&p->lock);
		pthread_mutex_lock(&p->msg_lock);
		p->newest_error[0] = 0;
		pthread_mutex_unlock(&p->msg_lock);
		err = p->src.make(p->src.ctx, p->o.boot_timeout_ms, &m);
		pthread_mutex_lock(&p->lock);
		p->filling--;
		if (err == 0) {
			err = ready_append(p, m);
			if (err < 0) {
				push_reap(p, m);
			} else {
				p->failing = 0;
				p->backoff_until = 0;
			}
		}
		if (err < 0) {
			unsigned shift = p->failing < 7 ? p->failing : 7;
			int64_t wait = (int64_t)BACKOFF_FIRST_MS << shift;

			p->failures++;
			p->failing++;
			p->last_error = err;
			pthread_mutex_lock(&p->msg_lock);
			if (p->newest_error[0])
				snprintf(p->last_message,
					 sizeof(p->last_message), "%s",
					 p->newest_error);
			else
				snprintf(p->last_message,
					 sizeof(p->last_message),
					 "a member did not start: %s",
					 strerror(-err));
			pthread_mutex_unlock(&p->msg_lock);
			p->backoff_until =
				now_ms() +
				(wait > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : wait);
			kiln_logf(&p->user_log, KILN_LOG_WARN,
				  "pool: refill failed (%u in a row), next "
				  "try in %lld ms: %s",
				  p->failing,
				  (long long)(p->backoff_until - now_ms()),
				  p->last_message);
		}
		pthread_cond_broadcast(&p->claim_cv);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Moves ready members idle past their lifetime to the reap list; returns
 * when the next one expires (0: none). */
static int64_t expire_idle(struct kiln_pool *p, int64_t now)
{
	int64_t life = p->o.idle_lifetime_ms;

	if (!life)
		return 0;
	while (p->ready && p->ready->ready_at + life <= now) {
		struct member *e = p->ready;

		p->ready = e->next;
		if (!p->ready)
			p->ready_tail = NULL;
		p->nready--;
		e->next = p->reap;
		p->reap = e;
		p->releasing++;
		pthread_cond_signal(&p->fill_cv);
	}
	return p->ready ? p->ready->ready_at + life : 0;
}

static void *reaper_main(void *arg)
{
	struct kiln_pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		int64_t next = expire_idle(p, now_ms());
		struct member *e = p->reap;

		if (e) {
			p->reap = e->next;
			pthread_mutex_unlock(&p->lock);
			p->src.destroy(p->src.ctx, e->m);
			free(e);
			pthread_mutex_lock(&p->lock);
			if (p->releasing)
				p->releasing--;
			continue;
		}
		if (p->reaper_stop)
			break;
		if (next) {
			struct timespec ts;

			deadline_ts(next, &ts);
			pthread_cond_timedwait(&p->reap_cv, &p->lock, &ts);
		} else {
			pthread_cond_wait(&p->reap_cv, &p->lock);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* A member made before the threads start (the snapshot source's first,
 * which proves the snapshot restores). */
static int push_ready(struct kiln_pool *p, void *m)
{
	int err;

	pthread_mutex_lock(&p->lock);
	err = ready_append(p, m);
	pthread_mutex_unlock(&p->lock);
	return err;
}

int pool_start(struct kiln_pool *p)
{
	if (thread_start_blocked(&p->reaper, reaper_main, p) != 0)
		return kiln_errorf(&p->user_log, -EAGAIN,
				   "pool: cannot start a thread");
	p->reaper_started = true;
	for (unsigned i = 0; i < p->o.fill_parallel; i++) {
		if (thread_start_blocked(&p->fillers[i], filler_main, p) != 0)
			return kiln_errorf(&p->user_log, -EAGAIN,
					   "pool: cannot start a thread");
		p->nfillers++;
	}
	return 0;
}

/* ---- claims ---- */

/* The oldest ready member that still works, or NULL (dead ones go to the
 * reaper). Called locked; the alive check must be quick. */
static void *take_ready(struct kiln_pool *p)
{
	while (p->ready) {
		struct member *e = p->ready;
		void *m = e->m;

		p->ready = e->next;
		if (!p->ready)
			p->ready_tail = NULL;
		p->nready--;
		pthread_cond_signal(&p->fill_cv);
		free(e);
		if (!p->src.alive || p->src.alive(p->src.ctx, m))
			return m;
		/* it died while it waited: not a claim, a failure */
		p->failures++;
		push_reap(p, m);
	}
	return NULL;
}

int pool_acquire(struct kiln_pool *p, int timeout_ms, bool try_only,
		 void **member)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	int err = 0;

	*member = NULL;
	pthread_mutex_lock(&p->lock);
	p->waiters++;
	for (;;) {
		void *m;

		if (p->closing) {
			err = -ECANCELED;
			break;
		}
		m = take_ready(p);
		if (m) {
			*member = m;
			p->in_use++;
			p->acquired++;
			break;
		}
		if (try_only || p->o.empty == KILN_POOL_FAIL) {
			err = -EAGAIN;
			break;
		}
		if (p->o.empty == KILN_POOL_COLD) {
			/* boot one here, as the pool would */
			pthread_mutex_unlock(&p->lock);
			err = p->src.make(p->src.ctx, p->o.boot_timeout_ms, &m);
			pthread_mutex_lock(&p->lock);
			if (err == 0) {
				*member = m;
				p->in_use++;
				p->acquired++;
			}
			break;
		}
		if (p->failing) {
			/* refills fail: say why rather than wait for ever */
			err = p->last_error ? p->last_error : -EIO;
			kiln_logf(&p->user_log, KILN_LOG_ERROR,
				  "pool: no member ready and refills fail (%u "
				  "in a row): %s",
				  p->failing, p->last_message);
			break;
		}
		if (deadline >= 0 && now_ms() >= deadline) {
			err = -ETIMEDOUT;
			break;
		}
		if (deadline >= 0) {
			struct timespec ts;

			deadline_ts(deadline, &ts);
			pthread_cond_timedwait(&p->claim_cv, &p->lock, &ts);
		} else {
			pthread_cond_wait(&p->claim_cv, &p->lock);
		}
	}
	p->waiters--;
	if (p->closing)
		pthread_cond_broadcast(&p->claim_cv); /* destroy waits for us */
	pthread_mutex_unlock(&p->lock);
	return err;
}

void pool_release(struct kiln_pool *p, void *member)
{
	if (!member)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->in_use)
		p->in_use--;
	push_reap(p, member);
	pthread_mutex_unlock(&p->lock);
}

KILN_API void kiln_pool_stats(struct kiln_pool *p, struct kiln_pool_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&p->lock);
	out->target = p->o.target;
	out->ready = p->nready;
	out->filling = p->filling;
	out->in_use = p->in_use;
	out->releasing = p->releasing;
	out->acquired = p->acquired;
	out->booted = p->booted;
	out->failures = p->failures;
	out->failing = p->failing;
	out->last_error = p->last_error;
	memcpy(out->last_message, p->last_message, sizeof(out->last_message));
	pthread_mutex_unlock(&p->lock);
}

KILN_API void kiln_pool_destroy(struct kiln_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->closing = true;
	pthread_cond_broadcast(&p->fill_cv);
	pthread_cond_broadcast(&p->claim_cv);
	while (p->waiters)
		pthread_cond_wait(&p->claim_cv, &p->lock);
	pthread_mutex_unlock(&p->lock);
	/* boots in progress end within their timeout */
	for (unsigned i = 0; i < p->nfillers; i++)
		pthread_join(p->fillers[i], NULL);
	pthread_mutex_lock(&p->lock);
	while (p->ready) {
		struct member *e = p->ready;

		p->ready = e->next;
		e->next = p->reap;
		p->reap = e;
	}
	p->ready_tail = NULL;
	p->nready = 0;
	p->reaper_stop = true;
	pthread_cond_signal(&p->reap_cv);
	pthread_mutex_unlock(&p->lock);
	if (p->reaper_started) {
		pthread_join(p->reaper, NULL);
	} else {
		while (p->reap) {
			struct member *e = p->reap;

			p->reap = e->next;
			p->src.destroy(p->src.ctx, e->m);
			free(e);
		}
	}
	if (p->src.free_ctx)
		p->src.free_ctx(p->src.ctx);
	pthread_cond_destroy(&p->fill_cv);
	pthread_cond_destroy(&p->claim_cv);
	pthread_cond_destroy(&p->reap_cv);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->msg_lock);
	free(p);
}

/* ---- the sandbox source ---- */

/* What the sandbox and snapshot sources keep: a config and a path. */
struct source {
	struct kiln_config *cfg; /* a copy, logging through the pool */
	char *path;		 /* a snapshot to restore, or NULL */
};

static void source_free(void *ctx)
{
	struct source *s = ctx;

	if (s) {
		kiln_config_free(s->cfg);
		free(s->path);
		free(s);
	}
}

static int sandbox_make(void *ctx, int timeout_ms, void **member)
{
	struct source *s = ctx;
	struct kiln_sandbox *sb = NULL;
	int err;

	if (s->path) {
		err = kiln_sandbox_restore(s->cfg, s->path, timeout_ms, &sb);
		if (err == 0)
			*member = sb;
		return err;
	}
	err = kiln_sandbox_create(s->cfg, &sb);

	if (err == 0) {
		err = kiln_sandbox_wait_ready(sb, timeout_ms);
		if (err < 0) {
			kiln_errorf(&s->cfg->log, err,
				    "pool: a member's agent did not answer "
				    "within %d ms: %s",
				    timeout_ms,
				    err == -ETIMEDOUT ? "timed out"
						      : "the VM ended");
			kiln_sandbox_destroy(sb);
		}
	}
	if (err == 0)
		*member = sb;
	return err;
}

static int sandbox_alive(void *ctx, void *member)
{
	struct kiln_vm *vm = kiln_sandbox_vm(member);

	(void)ctx;
	return !vm || kiln_vm_outcome(vm) == KILN_OUTCOME_NONE;
}

static void sandbox_end(void *ctx, void *member)
{
	(void)ctx;
	kiln_sandbox_stop(member, 1000, NULL);
	kiln_sandbox_destroy(member);
}

/* Why members of cfg could not live side by side, or NULL. */
static const char *collision(const struct kiln_config *cfg)
{
	const struct virtio_dev_opts *d;
	int at = -1;

	if (config_next_device(cfg, &virtio_vsock_ops, &at))
		return "a vsock socket path (each member gets its own)";
	if (cfg->net.forwards[0])
		return "a published port (-p: only one member could bind it)";
	at = -1;
	while ((d = config_next_device(cfg, &virtio_blk_ops, &at)))
		if (!virtio_dev_opts_get(d, "ro") &&
		    !virtio_dev_opts_get(d, "snapshot"))
			return "a disk opened read-write (add ,ro or "
			       ",snapshot: members would write it at once)";
	return NULL;
}

KILN_API int kiln_pool_create(const struct kiln_config *cfg,
			      const struct kiln_pool_opts *o,
			      struct kiln_pool **out)
{
	struct pool_source src = {
		.make = sandbox_make,
		.alive = sandbox_alive,
		.destroy = sandbox_end,
		.free_ctx = source_free,
	};
	struct source *s;
	const char *why, *from = NULL;
	int err;

	*out = NULL;
	/* from_snapshot, if the caller's struct has it */
	if (o && o->size >= offsetof(struct kiln_pool_opts, from_snapshot) +
				    sizeof(o->from_snapshot))
		from = o->from_snapshot;
	if (!cfg->kernel_path && !from)
		return kiln_errorf(&cfg->log, -EINVAL,
				   "pool: no kernel (use "
				   "kiln_config_set_guest_dir for kiln's "
				   "guest)");
	why = collision(cfg);
	if (why)
		return kiln_errorf(&cfg->log, -EINVAL,
				   "pool: the config has %s", why);
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	src.ctx = s;
	err = pool_new(&src, o, &cfg->log, out);
	if (err < 0)
		return err;
	s->cfg = config_clone(cfg);
	if (!s->cfg || (from && !(s->path = strdup(from)))) {
		kiln_pool_destroy(*out);
		*out = NULL;
		return -ENOMEM;
	}
	s->cfg->log = *pool_log(*out);
	err = pool_start(*out);
	if (err < 0) {
		kiln_pool_destroy(*out);
		*out = NULL;
	}
	return err;
}

static int wrong_kind(struct kiln_pool *p, int kind)
{
	if (p->kind == kind)
		return 0;
	return kiln_errorf(&p->user_log, -EINVAL,
			   "pool: a pool of %s has no %s to acquire",
			   p->kind == POOL_VMS ? "restored VMs" : "sandboxes",
			   kind == POOL_VMS ? "VMs" : "sandboxes");
}

KILN_API int kiln_pool_acquire(struct kiln_pool *p, int timeout_ms,
			       struct kiln_sandbox **out)
{
	*out = NULL;
	if (wrong_kind(p, POOL_SANDBOXES))
		return -EINVAL;
	return pool_acquire(p, timeout_ms, false, (void **)out);
}

KILN_API int kiln_pool_try_acquire(struct kiln_pool *p,
				   struct kiln_sandbox **out)
{
	*out = NULL;
	if (wrong_kind(p, POOL_SANDBOXES))
		return -EINVAL;
	return pool_acquire(p, 0, true, (void **)out);
}

KILN_API void kiln_pool_release(struct kiln_pool *p, struct kiln_sandbox *sb)
{
	pool_release(p, sb);
}

/* ---- the snapshot source: restored VMs, not started ---- */

static int vm_make(void *ctx, int timeout_ms, void **member)
{
	struct source *s = ctx;
	struct kiln_vm *vm = NULL;
	int err;

	(void)timeout_ms;
	err = kiln_vm_restore(s->cfg, s->path, 0, &vm);
	if (err == 0)
		*member = vm;
	return err;
}

static void vm_end(void *ctx, void *member)
{
	(void)ctx;
	kiln_vm_destroy(member);
}

KILN_API int kiln_pool_create_from_snapshot(const struct kiln_config *cfg,
					    const char *dir,
					    const struct kiln_pool_opts *o,
					    struct kiln_pool **out)
{
	struct pool_source src = {
		.make = vm_make,
		.destroy = vm_end,
		.free_ctx = source_free,
	};
	struct source *s = calloc(1, sizeof(*s));
	void *first = NULL;
	int err;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	src.ctx = s;
	err = pool_new(&src, o, &cfg->log, out);
	if (err < 0)
		return err;
	(*out)->kind = POOL_VMS;
	s->cfg = config_clone(cfg);
	s->path = strdup(dir);
	if (!s->cfg || !s->path) {
		kiln_pool_destroy(*out);
		*out = NULL;
		return -ENOMEM;
	}
	s->cfg->log = *pool_log(*out);
	/* the first member here: a snapshot that does not restore is the
	 * caller's error now, not a pool that never fills */
	err = vm_make(s, 0, &first);
	if (err == 0) {
		err = push_ready(*out, first);
		if (err < 0)
			kiln_vm_destroy(first);
	}
	if (err == 0)
		err = pool_start(*out);
	if (err < 0) {
		kiln_pool_destroy(*out);
		*out = NULL;
	}
	return err;
}

KILN_API int kiln_pool_acquire_vm(struct kiln_pool *p, int timeout_ms,
				  struct kiln_vm **out)
{
	struct kiln_vm *vm = NULL;
	int err;

	*out = NULL;
	err = wrong_kind(p, POOL_VMS);
	if (err == 0)
		err = pool_acquire(p, timeout_ms, false, (void **)&vm);
	if (err == 0) {
		/* restored ahead, started now: the claim is thread starts */
		err = kiln_vm_start(vm);
		if (err < 0)
			pool_release(p, vm);
		else
			*out = vm;
	}
	return err;
}

KILN_API void kiln_pool_release_vm(struct kiln_pool *p, struct kiln_vm *vm)
{
	pool_release(p, vm);
}
