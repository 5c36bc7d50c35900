/* SPDX-License-Identifier: MIT */
/* The pool engine (src/sandbox/pool.c) over a fake source whose members are
 * numbered tokens: it fills to its target, hands every member out once,
 * refills, destroys released and idle members off the claim path, answers
 * with the last error while refills fail (never a hang) and recovers after,
 * follows its empty policy, and a destroy wakes its waiters. Pools of real
 * sandboxes are the CLI tier's (tests/linux/pool.sh). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandbox/pool.h"
#include "util/clock.h"

struct fake {
	struct kiln_pool *pool;
	pthread_mutex_t lock;
	int next_id;
	int made, destroyed, live;
	int fail;	 /* make fails with this (-errno) while non-zero */
	int make_ms;	 /* how long a make takes */
	bool dead_ones;	 /* alive() says no for odd ids */
	bool seen[4096]; /* ids handed out by acquire */
};

static int fake_make(void *ctx, int timeout_ms, void **member)
{
	struct fake *f = ctx;
	int fail, ms, *id;

	(void)timeout_ms;
	pthread_mutex_lock(&f->lock);
	fail = f->fail;
	ms = f->make_ms;
	pthread_mutex_unlock(&f->lock);
	if (ms)
		usleep((useconds_t)ms * 1000);
	if (fail)
		return kiln_errorf(pool_log(f->pool), fail,
				   "fake: member %d cannot boot", f->next_id);
	id = malloc(sizeof(*id));
	pthread_mutex_lock(&f->lock);
	*id = ++f->next_id;
	f->made++;
	f->live++;
	pthread_mutex_unlock(&f->lock);
	*member = id;
	return 0;
}

static int fake_alive(void *ctx, void *member)
{
	struct fake *f = ctx;

	return !f->dead_ones || *(int *)member % 2 == 0;
}

static void fake_destroy(void *ctx, void *member)
{
	struct fake *f = ctx;

	pthread_mutex_lock(&f->lock);
	f->destroyed++;
	f->live--;
	pthread_mutex_unlock(&f->lock);
	free(member);
}

static int get(struct fake *f, int *v)
{
	pthread_mutex_lock(&f->lock);
	int r = *v;
	pthread_mutex_unlock(&f->lock);
	return r;
}

static void set(struct fake *f, int *v, int val)
{
	pthread_mutex_lock(&f->lock);
	*v = val;
	pthread_mutex_unlock(&f->lock);
}

static struct kiln_pool *make_pool(struct fake *f, unsigned target,
				   unsigned parallel, unsigned idle_ms,
				   enum kiln_pool_empty empty)
{
	struct pool_source src = {
		.ctx = f,
		.make = fake_make,
		.alive = fake_alive,
		.destroy = fake_destroy,
	};
	struct kiln_pool_opts o;
	struct kiln_pool *p;

	kiln_pool_opts_init(&o);
	o.target = target;
	o.fill_parallel = parallel;
	o.idle_lifetime_ms = idle_ms;
	o.empty = empty;
	assert_int_equal(pool_new(&src, &o, NULL, &p), 0);
	f->pool = p;
	assert_int_equal(pool_start(p), 0);
	return p;
}

static void init_fake(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
}

/* Waits (10 s at most) until the pool has `ready` members ready. */
static void wait_ready(struct kiln_pool *p, unsigned ready)
{
	struct kiln_pool_stats st;

	for (int i = 0; i < 1000; i++) {
		kiln_pool_stats(p, &st);
		if (st.ready == ready)
			return;
		usleep(10000);
	}
	fail_msg("the pool never had %u members ready (%u)", ready, st.ready);
}

static void fills_and_never_reuses(void **state)
{
	struct kiln_pool_stats st;
	struct fake f;
	struct kiln_pool *p;

	(void)state;
	init_fake(&f);
	f.make_ms = 5;
	p = make_pool(&f, 3, 2, 0, KILN_POOL_WAIT);
	wait_ready(p, 3);
	for (int i = 0; i < 40; i++) {
		void *m;

		assert_int_equal(pool_acquire(p, 10000, false, &m), 0);
		assert_false(f.seen[*(int *)m]); /* never handed out twice */
		f.seen[*(int *)m] = true;
		pool_release(p, m);
	}
	wait_ready(p, 3); /* refilled */
	kiln_pool_stats(p, &st);
	assert_int_equal(st.acquired, 40);
	assert_int_equal(st.in_use, 0);
	assert_int_equal(st.failures, 0);
	assert_true(st.booted >= 43);
	kiln_pool_destroy(p);
	/* everything made was destroyed: released, and the ready ones */
	assert_int_equal(f.live, 0);
	assert_int_equal(f.made, f.destroyed);
}

static void failing_refills_answer_with_the_error(void **state)
{
	struct kiln_pool_stats st;
	struct fake f;
	struct kiln_pool *p;
	int64_t t0;
	void *m;
	int err;

	(void)state;
	init_fake(&f);
	f.fail = -ENOEXEC;
	p = make_pool(&f, 2, 1, 0, KILN_POOL_WAIT);
	t0 = now_ms();
	/* no timeout given: the error comes back, not a wait for ever */
	err = pool_acquire(p, -1, false, &m);
	assert_int_equal(err, -ENOEXEC);
	assert_true(now_ms() - t0 < 5000);
	kiln_pool_stats(p, &st);
	assert_true(st.failures >= 1);
	assert_true(st.failing >= 1);
	assert_int_equal(st.last_error, -ENOEXEC);
	assert_non_null(strstr(st.last_message, "cannot boot"));
	/* backing off: a few tries a second at most, not a spin */
	usleep(500000);
	kiln_pool_stats(p, &st);
	assert_true(st.failures <= 4);
	/* the source recovers: members come after the backoff */
	set(&f, &f.fail, 0);
	for (int i = 0; i < 1500; i++) {
		kiln_pool_stats(p, &st);
		if (!st.failing)
			break;
		/* until a refill works, claims get the error at once */
		usleep(10000);
	}
	assert_int_equal(pool_acquire(p, 15000, false, &m), 0);
	kiln_pool_stats(p, &st);
	assert_int_equal(st.failing, 0);
	pool_release(p, m);
	kiln_pool_destroy(p);
	assert_int_equal(f.live, 0);
}

static void empty_policies(void **state)
{
	struct fake f;
	struct kiln_pool *p;
	void *m, *m2;

	(void)state;
	init_fake(&f);
	f.make_ms = 300;
	p = make_pool(&f, 1, 1, 0, KILN_POOL_FAIL);
	assert_int_equal(pool_acquire(p, 10000, false, &m), -EAGAIN);
	wait_ready(p, 1);
	assert_int_equal(pool_acquire(p, 10000, false, &m), 0);
	pool_release(p, m);
	kiln_pool_destroy(p);

	init_fake(&f);
	f.make_ms = 300;
	p = make_pool(&f, 1, 1, 0, KILN_POOL_COLD);
	wait_ready(p, 1);
	assert_int_equal(pool_acquire(p, 10000, false, &m), 0);
	/* empty now (the refill takes 300 ms): this one boots here */
	assert_int_equal(pool_acquire(p, 10000, false, &m2), 0);
	assert_ptr_not_equal(m, m2);
	pool_release(p, m);
	kiln_pool_destroy(p);
	assert_int_equal(f.live, 1); /* m2 stays the caller's */
	fake_destroy(&f, m2);

	/* waiting with a timeout */
	init_fake(&f);
	f.make_ms = 2000;
	p = make_pool(&f, 1, 1, 0, KILN_POOL_WAIT);
	assert_int_equal(pool_acquire(p, 100, false, &m), -ETIMEDOUT);
	assert_int_equal(pool_acquire(p, 0, true, &m), -EAGAIN);
	kiln_pool_destroy(p);
}

struct waiter {
	struct kiln_pool *p;
	int err;
};

static void *wait_main(void *arg)
{
	struct waiter *w = arg;
	void *m;

	w->err = pool_acquire(w->p, -1, false, &m);
	return NULL;
}

static void destroy_wakes_waiters(void **state)
{
	struct waiter w[3];
	pthread_t t[3];
	struct fake f;
	struct kiln_pool *p;

	(void)state;
	init_fake(&f);
	f.make_ms = 1500;
	p = make_pool(&f, 1, 1, 0, KILN_POOL_WAIT);
	for (int i = 0; i < 3; i++) {
		w[i].p = p;
		w[i].err = 1;
		assert_int_equal(pthread_create(&t[i], NULL, wait_main, &w[i]),
				 0);
	}
	usleep(200000);
	kiln_pool_destroy(p);
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].err, -ECANCELED);
	}
	/* the boot that was running was waited for and destroyed */
	assert_int_equal(f.live, 0);
}

static void idle_members_are_replaced(void **state)
{
	struct kiln_pool_stats st;
	struct fake f;
	struct kiln_pool *p;

	(void)state;
	init_fake(&f);
	p = make_pool(&f, 2, 1, 200, KILN_POOL_WAIT);
	wait_ready(p, 2);
	usleep(700000);
	kiln_pool_stats(p, &st);
	assert_true(get(&f, &f.destroyed) >= 2);
	assert_true(st.booted >= 4);
	assert_int_equal(st.acquired, 0);
	kiln_pool_destroy(p);
	assert_int_equal(f.live, 0);
}

static void dead_members_are_skipped(void **state)
{
	struct fake f;
	struct kiln_pool *p;

	(void)state;
	init_fake(&f);
	f.dead_ones = true; /* odd ids died while they waited */
	p = make_pool(&f, 4, 1, 0, KILN_POOL_WAIT);
	wait_ready(p, 4);
	for (int i = 0; i < 6; i++) {
		void *m;

		assert_int_equal(pool_acquire(p, 10000, false, &m), 0);
		assert_int_equal(*(int *)m % 2, 0);
		pool_release(p, m);
	}
	kiln_pool_destroy(p);
	assert_int_equal(f.live, 0);
}

static void bad_options(void **state)
{
	struct pool_source src = {.make = fake_make, .destroy = fake_destroy};
	struct kiln_pool_opts o;
	struct kiln_pool *p = NULL;
	struct fake f;

	(void)state;
	init_fake(&f);
	src.ctx = &f;
	kiln_pool_opts_init(&o);
	o.target = 0;
	assert_int_equal(pool_new(&src, &o, NULL, &p), -EINVAL);
	o.target = 65;
	assert_int_equal(pool_new(&src, &o, NULL, &p), -EINVAL);
	kiln_pool_opts_init(&o);
	o.fill_parallel = 17;
	assert_int_equal(pool_new(&src, &o, NULL, &p), -EINVAL);
	kiln_pool_opts_init(&o);
	o.empty = (enum kiln_pool_empty)7;
	assert_int_equal(pool_new(&src, &o, NULL, &p), -EINVAL);
	o.size = 0;
	assert_int_equal(pool_new(&src, &o, NULL, &p), -EINVAL);
	assert_null(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fills_and_never_reuses),
		cmocka_unit_test(failing_refills_answer_with_the_error),
		cmocka_unit_test(empty_policies),
		cmocka_unit_test(destroy_wakes_waiters),
		cmocka_unit_test(idle_members_are_replaced),
		cmocka_unit_test(dead_members_are_skipped),
		cmocka_unit_test(bad_options),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
