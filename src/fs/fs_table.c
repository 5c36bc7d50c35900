/* SPDX-License-Identifier: MIT */
#include "fs_table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NO_SLOT	       UINT32_MAX
#define SLOTS_MIN      64
#define HASH_MIN       64
#define SLOT_INDEX_MAX (UINT32_MAX - 1) /* index + 1 must fit in 32 bits */

/* ---- generation-checked slot arrays ---- */

static void slots_init(struct fs_slots *sl, uint32_t max)
{
	memset(sl, 0, sizeof(*sl));
	sl->max = max;
	sl->free_head = NO_SLOT;
}

/* Stores p in a free slot; the caller checked used < max. */
static int slots_add(struct fs_slots *sl, void *p, uint64_t *id)
{
	uint32_t i;

	if (sl->free_head != NO_SLOT) {
		i = sl->free_head;
		sl->free_head = sl->v[i].next_free;
	} else {
		if (sl->len == sl->cap) {
			uint32_t ncap = sl->cap ? sl->cap : SLOTS_MIN / 2;
			struct fs_slot *nv;

			if (sl->cap >= SLOT_INDEX_MAX / 2)
				return -ENFILE;
			ncap *= 2;
			nv = realloc(sl->v, (size_t)ncap * sizeof(*nv));
			if (!nv)
				return -ENOMEM;
			sl->v = nv;
			sl->cap = ncap;
		}
		i = sl->len++;
		sl->v[i].gen = 0;
	}
	sl->v[i].p = p;
	sl->used++;
	*id = (uint64_t)sl->v[i].gen << 32 | (i + 1);
	return 0;
}

static void *slots_find(const struct fs_slots *sl, uint64_t id)
{
	uint32_t lo = (uint32_t)id;

	if (lo == 0 || lo > sl->len)
		return NULL;
	if (sl->v[lo - 1].gen != (uint32_t)(id >> 32))
		return NULL;
	return sl->v[lo - 1].p;
}

static void slots_remove(struct fs_slots *sl, uint64_t id)
{
	struct fs_slot *e = &sl->v[(uint32_t)id - 1];

	e->p = NULL;
	sl->used--;
	/* A slot whose generation would wrap is retired: ids stay unique. */
	if (e->gen == UINT32_MAX)
		return;
	e->gen++;
	e->next_free = sl->free_head;
	sl->free_head = (uint32_t)id - 1;
}

/* ---- (dev, ino) hash ---- */

static uint32_t hash_key(const struct fs_table *t, dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev;

	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 32;
	return (uint32_t)h & (t->hash_size - 1);
}

static void hash_insert(struct fs_table *t, struct fs_inode *ino)
{
	uint32_t b = hash_key(t, ino->dev, ino->ino);

	ino->hnext = t->hash[b];
	t->hash[b] = ino;
}

static void hash_remove(struct fs_table *t, struct fs_inode *ino)
{
	struct fs_inode **pp = &t->hash[hash_key(t, ino->dev, ino->ino)];

	while (*pp && *pp != ino)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = ino->hnext;
}

/* Doubles the bucket array when inodes outnumber buckets; on ENOMEM the
 * chains just get longer. */
static void hash_maybe_grow(struct fs_table *t)
{
	uint32_t old = t->hash_size, nsize = old * 2;
	struct fs_inode **nh, **oh = t->hash;

	if (t->inodes.used <= old || old >= (1u << 30))
		return;
	nh = calloc(nsize, sizeof(*nh));
	if (!nh)
		return;
	t->hash = nh;
	t->hash_size = nsize;
	for (uint32_t b = 0; b < old; b++) {
		struct fs_inode *p = oh[b], *next;

		for (; p; p = next) {
			next = p->hnext;
			hash_insert(t, p);
		}
	}
	free(oh);
}

/* ---- inodes ---- */

/* Drops one server reference with the lock held; returns the inode if it
 * is now unreachable and must be closed and freed by the caller. */
static struct fs_inode *inode_unref_locked(struct fs_table *t,
					   struct fs_inode *ino)
{
	if (--ino->refs)
		return NULL;
	hash_remove(t, ino);
	slots_remove(&t->inodes, ino->nodeid);
	return ino;
}

static void inode_free(struct fs_inode *ino)
{
	if (ino) {
		close(ino->fd);
		free(ino);
	}
}

int fs_table_init(struct fs_table *t, const struct kiln_log *log, int root_fd,
		  const struct stat *st, uint32_t max_inodes,
		  uint32_t max_handles)
{
	struct fs_inode *root;
	uint64_t id;

	memset(t, 0, sizeof(*t));
	t->log = log;
	slots_init(&t->inodes, max_inodes ? max_inodes : 1);
	slots_init(&t->handles, max_handles ? max_handles : 1);
	t->hash_size = HASH_MIN;
	t->hash = calloc(t->hash_size, sizeof(*t->hash));
	root = calloc(1, sizeof(*root));
	if (!t->hash || !root || slots_add(&t->inodes, root, &id) < 0) {
		free(t->hash);
		free(t->inodes.v);
		free(root);
		close(root_fd);
		return -ENOMEM;
	}
	root->fd = root_fd;
	root->type = st->st_mode & S_IFMT;
	root->dev = st->st_dev;
	root->ino = st->st_ino;
	root->nodeid = id; /* slot 0, generation 0: FUSE_ROOT_ID */
	root->refs = 1;	   /* permanent */
	hash_insert(t, root);
	t->root = root;
	pthread_mutex_init(&t->lock, NULL);
	return 0;
}

void fs_table_destroy(struct fs_table *t)
{
	if (!t->hash)
		return;
	fs_table_reset(t);
	for (uint32_t i = 0; i < t->inodes.len; i++)
		inode_free(t->inodes.v[i].p);
	free(t->inodes.v);
	free(t->handles.v);
	free(t->hash);
	pthread_mutex_destroy(&t->lock);
	memset(t, 0, sizeof(*t));
}

int fs_inode_get(struct fs_table *t, uint64_t nodeid, struct fs_inode **out)
{
	struct fs_inode *ino;

	pthread_mutex_lock(&t->lock);
	ino = slots_find(&t->inodes, nodeid);
	if (ino)
		ino->refs++;
	pthread_mutex_unlock(&t->lock);
	*out = ino;
	return ino ? 0 : -EBADF;
}

void fs_inode_put(struct fs_table *t, struct fs_inode *ino)
{
	struct fs_inode *dead;

	if (!ino)
		return;
	pthread_mutex_lock(&t->lock);
	dead = inode_unref_locked(t, ino);
	pthread_mutex_unlock(&t->lock);
	inode_free(dead);
}

int fs_inode_publish(struct fs_table *t, int fd, const struct stat *st,
		     struct fs_inode **out)
{
	struct fs_inode *ino;
	uint64_t id;
	int err;

	*out = NULL;
	pthread_mutex_lock(&t->lock);
	for (ino = t->hash[hash_key(t, st->st_dev, st->st_ino)]; ino;
	     ino = ino->hnext)
		if (ino->dev == st->st_dev && ino->ino == st->st_ino)
			break;
	if (ino) {
		if (ino->nlookup++ == 0)
			ino->refs++; /* the lookup reference */
		ino->refs++;
		pthread_mutex_unlock(&t->lock);
		close(fd);
		*out = ino;
		return 0;
	}
	if (t->inodes.used >= t->inodes.max) {
		bool first = !t->inode_limit_logged;

		t->inode_limit_logged = true;
		pthread_mutex_unlock(&t->lock);
		close(fd);
		/* once per episode: a guest must not be able to flood the log
		 */
		if (first)
			log_warn(t->log,
				 "fuse: inode limit (%u) reached, lookups fail "
				 "with ENFILE",
				 t->inodes.max);
		return -ENFILE;
	}
	ino = calloc(1, sizeof(*ino));
	err = ino ? slots_add(&t->inodes, ino, &id) : -ENOMEM;
	if (err < 0) {
		pthread_mutex_unlock(&t->lock);
		free(ino);
		close(fd);
		return err;
	}
	if (t->inodes.used < t->inodes.max)
		t->inode_limit_logged = false;
	ino->fd = fd;
	ino->type = st->st_mode & S_IFMT;
	ino->dev = st->st_dev;
	ino->ino = st->st_ino;
	ino->nodeid = id;
	ino->nlookup = 1;
	ino->refs = 2; /* lookup + caller */
	hash_insert(t, ino);
	hash_maybe_grow(t);
	pthread_mutex_unlock(&t->lock);
	*out = ino;
	return 0;
}

void fs_inode_forget(struct fs_table *t, uint64_t nodeid, uint64_t n)
{
	struct fs_inode *ino, *dead = NULL;

	pthread_mutex_lock(&t->lock);
	ino = slots_find(&t->inodes, nodeid);
	if (ino && ino->nlookup) {
		if (n >= ino->nlookup) {
			ino->nlookup = 0;
			dead = inode_unref_locked(t, ino);
		} else {
			ino->nlookup -= n;
		}
	}
	pthread_mutex_unlock(&t->lock);
	inode_free(dead);
}

/* ---- handles ---- */

int fs_handle_new(struct fs_table *t, int fd, bool dir, struct fs_inode *ino,
		  uint64_t *fh)
{
	struct fs_handle *h;
	int err;

	pthread_mutex_lock(&t->lock);
	if (t->handles.used >= t->handles.max) {
		bool first = !t->handle_limit_logged;

		t->handle_limit_logged = true;
		pthread_mutex_unlock(&t->lock);
		close(fd);
		if (first)
			log_warn(t->log,
				 "fuse: open handle limit (%u) reached, opens "
				 "fail with ENFILE",
				 t->handles.max);
		return -ENFILE;
	}
	h = calloc(1, sizeof(*h));
	err = h ? slots_add(&t->handles, h, fh) : -ENOMEM;
	if (err < 0) {
		pthread_mutex_unlock(&t->lock);
		free(h);
		close(fd);
		return err;
	}
	if (t->handles.used < t->handles.max)
		t->handle_limit_logged = false;
	h->fd = fd;
	h->dir = dir;
	h->fh = *fh;
	h->refs = 1;
	h->inode = ino;
	ino->refs++;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

int fs_handle_get(struct fs_table *t, uint64_t fh, struct fs_handle **out)
{
	struct fs_handle *h;

	pthread_mutex_lock(&t->lock);
	h = slots_find(&t->handles, fh);
	if (h)
		h->refs++;
	pthread_mutex_unlock(&t->lock);
	*out = h;
	return h ? 0 : -EBADF;
}

/* With the lock held: drops a handle reference; a handle that reached 0 is
 * returned for handle_free() after unlocking, its inode reference dropped
 * into *dead. */
static struct fs_handle *handle_unref_locked(struct fs_table *t,
					     struct fs_handle *h,
					     struct fs_inode **dead)
{
	*dead = NULL;
	if (--h->refs)
		return NULL;
	*dead = inode_unref_locked(t, h->inode);
	return h;
}

static void handle_free(struct fs_handle *h)
{
	if (h) {
		close(h->fd);
		free(h);
	}
}

void fs_handle_put(struct fs_table *t, struct fs_handle *h)
{
	struct fs_inode *dead;

	if (!h)
		return;
	pthread_mutex_lock(&t->lock);
	h = handle_unref_locked(t, h, &dead);
	pthread_mutex_unlock(&t->lock);
	handle_free(h);
	inode_free(dead);
}

int fs_handle_release(struct fs_table *t, uint64_t fh)
{
	struct fs_handle *h;
	struct fs_inode *dead;

	pthread_mutex_lock(&t->lock);
	h = slots_find(&t->handles, fh);
	if (!h) {
		pthread_mutex_unlock(&t->lock);
		return -EBADF;
	}
	slots_remove(&t->handles, fh);
	h = handle_unref_locked(t, h, &dead);
	pthread_mutex_unlock(&t->lock);
	handle_free(h);
	inode_free(dead);
	return 0;
}

void fs_table_reset(struct fs_table *t)
{
	pthread_mutex_lock(&t->lock);
	for (uint32_t i = 0; i < t->handles.len; i++) {
		struct fs_handle *h = t->handles.v[i].p;
		struct fs_inode *dead;

		if (!h)
			continue;
		slots_remove(&t->handles, h->fh);
		handle_free(handle_unref_locked(t, h, &dead));
		inode_free(dead);
	}
	for (uint32_t i = 0; i < t->inodes.len; i++) {
		struct fs_inode *ino = t->inodes.v[i].p;

		if (ino && ino->nlookup) {
			ino->nlookup = 0;
			inode_free(inode_unref_locked(t, ino));
		}
	}
	t->inode_limit_logged = t->handle_limit_logged = false;
	pthread_mutex_unlock(&t->lock);
}

void fs_table_counts(struct fs_table *t, uint32_t *inodes, uint32_t *handles)
{
	pthread_mutex_lock(&t->lock);
	*inodes = t->inodes.used;
	*handles = t->handles.used;
	pthread_mutex_unlock(&t->lock);
}
