/* SPDX-License-Identifier: MIT */
#include "rng.h"

#include <errno.h>
#include <sys/random.h>

/* Bytes handed out per request: enough for any driver, bounded per chain. */
#define RNG_MAX_PER_CHAIN 65536

static uint64_t rng_features(struct virtio_dev *d)
{
	(void)d;
	return 0;
}

static void rng_queue_notify(struct virtio_dev *d, unsigned qi)
{
	struct virtq *q = &d->vqs[qi];
	static __thread struct virtq_chain chain;
	int r;

	while ((r = virtq_pop(q, &chain)) > 0) {
		uint64_t written = 0;

		for (unsigned i = 0;
		     i < chain.n_in && written < RNG_MAX_PER_CHAIN; i++) {
			size_t want = chain.in[i].iov_len;
			ssize_t n;

			if (want > RNG_MAX_PER_CHAIN - written)
				want = RNG_MAX_PER_CHAIN - written;
			do
				n = getrandom(chain.in[i].iov_base, want, 0);
			while (n < 0 && errno == EINTR);
			if (n <= 0)
				break;
			written += (uint64_t)n;
			if ((size_t)n < want)
				break;
		}
		virtio_dev_complete(d, qi, chain.head, (uint32_t)written);
	}
	if (r < 0)
		virtio_dev_fail(d, "malformed rng request ring");
}

static int rng_create(struct virtio_dev *d, const struct virtio_dev_opts *o)
{
	(void)o;
	virtio_rng_init(d);
	return 0;
}

/* Stateless: nothing to save beyond its queue. */
static int rng_save(const struct virtio_dev *d, struct snapshot_writer *w)
{
	(void)d, (void)w;
	return 0;
}

static int rng_restore(struct virtio_dev *d, struct snapshot_reader *r)
{
	(void)d, (void)r;
	return 0;
}

const struct virtio_dev_ops virtio_rng_ops = {
	.name = "virtio-rng",
	.device_id = VIRTIO_ID_RNG,
	.num_queues = 1,
	.queue_max_size = 64,
	.features = rng_features,
	.config_size = 0,
	.queue_notify = rng_queue_notify,
	.save = rng_save,
	.restore = rng_restore,
	.type = "rng",
	.max_per_vm = 1,
	.create = rng_create,
	.vhost_user_frontend = "vhost-user-rng",
};

void virtio_rng_init(struct virtio_dev *dev)
{
	dev->ops = &virtio_rng_ops;
	dev->priv = NULL;
}
