/* SPDX-License-Identifier: MIT */
/*
 * The log rate limiter (util/log.h) and its guest-triggerable call sites:
 * a burst, then one message a second, and the first after a suppression
 * says how many were dropped (issue 18: a guest resetting and breaking its
 * devices flooded the host's log).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "test_log.h"
#include "virtio/virtio.h"

static void test_burst_then_refill(void **state)
{
	struct kiln_ratelimit rl;
	uint64_t sup = 99;
	int64_t t0 = 5000;

	(void)state;
	memset(&rl, 0, sizeof(rl)); /* zeroed: a full bucket */
	for (int i = 0; i < KILN_RATELIMIT_BURST; i++) {
		assert_true(kiln_ratelimit_at(&rl, t0, &sup));
		assert_int_equal(sup, 0);
	}
	for (int i = 0; i < 50; i++)
		assert_false(kiln_ratelimit_at(&rl, t0 + 10, &sup));
	/* not yet a whole interval */
	assert_false(kiln_ratelimit_at(&rl, t0 + KILN_RATELIMIT_INTERVAL_MS - 1,
				       &sup));
	/* one token per interval; the first one reports the dropped */
	assert_true(
		kiln_ratelimit_at(&rl, t0 + KILN_RATELIMIT_INTERVAL_MS, &sup));
	assert_int_equal(sup, 51);
	assert_false(
		kiln_ratelimit_at(&rl, t0 + KILN_RATELIMIT_INTERVAL_MS, &sup));
	/* two more intervals: two tokens */
	assert_true(kiln_ratelimit_at(&rl, t0 + 3 * KILN_RATELIMIT_INTERVAL_MS,
				      &sup));
	assert_int_equal(sup, 1);
	assert_true(kiln_ratelimit_at(&rl, t0 + 3 * KILN_RATELIMIT_INTERVAL_MS,
				      &sup));
	assert_int_equal(sup, 0);
	assert_false(kiln_ratelimit_at(&rl, t0 + 3 * KILN_RATELIMIT_INTERVAL_MS,
				       NULL));
	/* a long quiet time refills the bucket, no more */
	for (int i = 0; i < KILN_RATELIMIT_BURST; i++)
		assert_true(kiln_ratelimit_at(&rl, t0 + 3600000, NULL));
	assert_false(kiln_ratelimit_at(&rl, t0 + 3600000, NULL));
	/* a clock that goes back does not open the gate */
	assert_false(kiln_ratelimit_at(&rl, 0, NULL));
}

static void test_logf_limited(void **state)
{
	struct kiln_ratelimit rl;
	struct kiln_log quiet = {capture_log, NULL, KILN_LOG_WARN};

	(void)state;
	memset(&rl, 0, sizeof(rl));
	n_logs = 0;
	/* filtered by level: costs no token */
	for (int i = 0; i < 100; i++)
		kiln_logf_limited(&quiet, &rl, KILN_LOG_DEBUG, "debug %d", i);
	assert_int_equal(n_logs, 0);
	for (int i = 0; i < 100; i++)
		kiln_logf_limited(&quiet, &rl, KILN_LOG_WARN, "warn %d", i);
	assert_int_equal(n_logs, KILN_RATELIMIT_BURST);
	assert_string_equal(last_log, "warn 9");
	/* NULL: no limit */
	kiln_logf_limited(&quiet, NULL, KILN_LOG_WARN, "unlimited");
	assert_int_equal(n_logs, KILN_RATELIMIT_BURST + 1);
	/* resuming names the count */
	rl.refill_ms -= KILN_RATELIMIT_INTERVAL_MS;
	kiln_logf_limited(&quiet, &rl, KILN_LOG_WARN, "again");
	assert_int_equal(n_logs, KILN_RATELIMIT_BURST + 2);
	assert_string_equal(last_log, "again (90 similar messages suppressed)");
}

struct runner {
	struct kiln_ratelimit *rl;
	uint64_t allowed, reported;
};

static void *hammer(void *arg)
{
	struct runner *r = arg;

	for (int i = 0; i < 20000; i++) {
		uint64_t sup = 0;

		if (kiln_ratelimit_at(r->rl, 1000, &sup)) {
			r->allowed++;
			r->reported += sup;
		}
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct kiln_ratelimit rl;
	struct runner r[4];
	pthread_t th[4];
	uint64_t allowed = 0, reported = 0, tail = 0;

	(void)state;
	memset(&rl, 0, sizeof(rl));
	for (int i = 0; i < 4; i++) {
		r[i] = (struct runner){.rl = &rl};
		assert_int_equal(pthread_create(&th[i], NULL, hammer, &r[i]),
				 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		allowed += r[i].allowed;
		reported += r[i].reported;
	}
	assert_int_equal(allowed, KILN_RATELIMIT_BURST);
	/* every refusal is counted once */
	assert_true(kiln_ratelimit_at(&rl, 1000 + KILN_RATELIMIT_INTERVAL_MS,
				      &tail));
	assert_int_equal(reported + tail, 4 * 20000 - KILN_RATELIMIT_BURST);
}

static void fake_reset(struct virtio_dev *d)
{
	(void)d;
}

static const struct virtio_dev_ops fake_ops = {
	.name = "fake",
	.num_queues = 1,
	.reset = fake_reset,
};

/* A driver that breaks its device, resets it and breaks it again, as fast
 * as it can: a burst of lines, not one per round. */
static void test_device_fail_reset_loop(void **state)
{
	struct virtio_dev d;

	(void)state;
	memset(&d, 0, sizeof(d));
	d.ops = &fake_ops;
	d.log = &test_log;
	n_logs = 0;
	for (int i = 0; i < 5000; i++) {
		virtio_dev_fail(&d, "malformed ring");
		virtio_dev_fail(&d, "malformed ring"); /* once per break */
		virtio_dev_reset(&d);
	}
	assert_true(n_logs >= 1);
	assert_true(n_logs <= KILN_RATELIMIT_BURST + 2);
	for (int i = 0; i < 5000; i++)
		virtio_dev_complete(&d, VIRTIO_MAX_QUEUES, 0, 0);
	assert_true(n_logs <= KILN_RATELIMIT_BURST + 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_then_refill),
		cmocka_unit_test(test_logf_limited),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_device_fail_reset_loop),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
