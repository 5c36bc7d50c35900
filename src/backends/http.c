/* SPDX-License-Identifier: MIT */
/*
 * Raw disk images on an HTTP(S) server (`--disk https://HOST/PATH`), read
 * with range requests through libcurl into a persistent sparse cache:
 * $XDG_CACHE_HOME/kiln/blocks/KEY.{data,map,key}, KEY a hash of the URL and
 * the object's validator (ETag, else Last-Modified) and size, so a changed
 * object gets a new cache. The map has one byte per HTTP_CHUNK, set only
 * after the chunk's data is written: two VMs sharing a cache at once at
 * worst fetch a chunk twice, and a crash between the two writes costs a
 * refetch, never wrong data. A miss fetches the chunk and the next one
 * (read-ahead) with retries and backoff; every range request carries
 * If-Match (or If-Unmodified-Since), so an object that changes mid-run is
 * an error, not a mix of two versions; a server that ignores ranges is
 * refused at open. Read-only: writes need ,snapshot (an overlay on top).
 * Thread-safe: each fetch has its own curl handle, so the disk's workers
 * fetch in parallel and a slow fetch holds only its own request.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backends/block.h"

#define HTTP_CHUNK	   (1u << 20)
#define HTTP_TRIES	   4
#define HTTP_CONNECT_SEC   10L
#define HTTP_STALL_SEC	   20L	/* under 4 KiB/s for this long: gone */
#define HTTP_TOTAL_SEC	   120L /* one request, at most */
#define HTTP_VALIDATOR_MAX 256
#define HTTP_READ_AHEAD	   4 /* chunks one miss fetches, when missing */
#define HTTP_HANDLES	   4 /* kept, with their connections */

struct http_disk {
	struct block_backend be;
	char *url;
	char validator[HTTP_VALIDATOR_MAX]; /* header line for fetches */
	uint64_t size, chunks;
	int data_fd, map_fd;
	uint8_t *map; /* what this process knows is cached */
	bool insecure;
	const struct kiln_log *log;
	struct kiln_ratelimit limit;
	/* idle curl handles: a fetch takes one (its connection stays open
	 * for the next) or makes one */
	pthread_mutex_t pool_lock;
	CURL *pool[HTTP_HANDLES];
	unsigned npool;
};

static struct http_disk *to_h(struct block_backend *be)
{
	return (struct http_disk *)be;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- one request ---- */

struct sink {
	uint8_t *buf;
	size_t cap, got;
	bool overflow;
};

static size_t sink_write(char *p, size_t sz, size_t n, void *opaque)
{
	struct sink *s = opaque;
	size_t len = sz * n;

	if (len > s->cap - s->got) {
		s->overflow = true;
		return 0; /* more than asked for: abort */
	}
	memcpy(s->buf + s->got, p, len);
	s->got += len;
	return len;
}

struct head_info {
	char etag[HTTP_VALIDATOR_MAX / 2];
	char lastmod[HTTP_VALIDATOR_MAX / 2];
};

static void header_value(const char *line, size_t n, char *out, size_t cap)
{
	const char *v = memchr(line, ':', n);
	size_t len;

	if (!v)
		return;
	v++;
	while (v < line + n && (*v == ' ' || *v == '\t'))
		v++;
	len = (size_t)(line + n - v);
	while (len &&
	       (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
		len--;
	if (len >= cap || memchr(v, '\r', len) || memchr(v, '\n', len))
		return; /* too long to trust as a validator: none */
	memcpy(out, v, len);
	out[len] = 0;
}

static size_t head_header(char *p, size_t sz, size_t n, void *opaque)
{
	struct head_info *h = opaque;
	size_t len = sz * n;

	if (len > 5 && !strncasecmp(p, "etag:", 5))
		header_value(p, len, h->etag, sizeof(h->etag));
	else if (len > 14 && !strncasecmp(p, "last-modified:", 14))
		header_value(p, len, h->lastmod, sizeof(h->lastmod));
	else if (len > 5 && !strncmp(p, "HTTP/", 5))
		memset(h, 0,
		       sizeof(*h)); /* a new response (a redirect's end) */
	return len;
}

/* The options every request of ours has: no signals, bounded waits,
 * only HTTP(S), redirects kept to HTTPS (HTTP too when insecure). A handle
 * from the pool keeps its open connection. */
static CURL *easy(struct http_disk *h, const char *url)
{
	CURL *c = NULL;

	if (h) {
		pthread_mutex_lock(&h->pool_lock);
		if (h->npool)
			c = h->pool[--h->npool];
		pthread_mutex_unlock(&h->pool_lock);
	}
	if (c)
		curl_easy_reset(c);
	else if (!(c = curl_easy_init()))
		return NULL;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, HTTP_CONNECT_SEC);
	/* a server that trickles is as good as gone: the guest's request
	 * (and a reset waiting for it) must not wait for ever */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 4096L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, HTTP_STALL_SEC);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, HTTP_TOTAL_SEC);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR,
			 h && h->insecure ? "http,https" : "https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "kiln/" KILN_VERSION_STRING);
	return c;
}

/* Back to the pool (or gone when it is full). */
static void easy_done(struct http_disk *h, CURL *c)
{
	pthread_mutex_lock(&h->pool_lock);
	if (h->npool < HTTP_HANDLES) {
		h->pool[h->npool++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&h->pool_lock);
	if (c)
		curl_easy_cleanup(c);
}

/* Fetches [off, off+len) into buf: 0, -ESTALE (the object changed),
 * -ENOTSUP (no range support), -EIO (after the retries). */
static int fetch(struct http_disk *h, uint64_t off, size_t len, uint8_t *buf)
{
	char range[64];
	int err = -EIO;

	snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)off,
		 (unsigned long long)(off + len - 1));
	for (int t = 0; t < HTTP_TRIES; t++) {
		struct sink s = {buf, len, 0, false};
		struct curl_slist *hdr = NULL;
		CURL *c = easy(h, h->url);
		long code = 0;
		CURLcode rc;

		if (!c)
			return -ENOMEM;
		if (h->validator[0])
			hdr = curl_slist_append(hdr, h->validator);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
		curl_easy_setopt(c, CURLOPT_RANGE, range);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
		rc = curl_easy_perform(c);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
		if (rc == CURLE_OK)
			easy_done(h, c);
		else
			curl_easy_cleanup(c); /* its connection is suspect */
		curl_slist_free_all(hdr);
		if (rc == CURLE_OK && code == 206 && s.got == len)
			return 0;
		if (code == 200) {
			kiln_logf_limited(h->log, &h->limit, KILN_LOG_ERROR,
					  "http disk %s: the server ignores "
					  "range requests",
					  h->url);
			return -ENOTSUP;
		}
		if (code == 412 || (rc == CURLE_OK && code == 206) ||
		    s.overflow) {
			/* a precondition failed, or the object is now another
			 * size: it changed under us */
			kiln_logf_limited(h->log, &h->limit, KILN_LOG_ERROR,
					  "http disk %s changed on the server "
					  "(HTTP %ld): reads fail",
					  h->url, code);
			return -ESTALE;
		}
		kiln_logf_limited(
			h->log, &h->limit, KILN_LOG_WARN,
			"http disk %s: bytes %s: %s%s (try %d of %d)", h->url,
			range,
			rc != CURLE_OK ? curl_easy_strerror(rc)
				       : "HTTP status ",
			rc != CURLE_OK ? "" : (code >= 500 ? "5xx" : "4xx"),
			t + 1, HTTP_TRIES);
		if (rc == CURLE_OK && code >= 400 && code < 500)
			return -EIO; /* the server said no: no retry helps */
		if (t + 1 < HTTP_TRIES) {
			struct timespec ts = {0, 100000000L << (2 * t)};

			while (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			nanosleep(&ts, NULL);
		}
	}
	return err;
}

/* ---- the cache ---- */

static bool cached(struct http_disk *h, uint64_t c)
{
	uint8_t b = 0;

	if (__atomic_load_n(&h->map[c], __ATOMIC_ACQUIRE))
		return true;
	/* another VM on the same cache may have fetched it */
	if (pread(h->map_fd, &b, 1, (off_t)c) == 1 && b == 1) {
		__atomic_store_n(&h->map[c], 1, __ATOMIC_RELEASE);
		return true;
	}
	return false;
}

/* Chunk c (and, as read-ahead, up to HTTP_READ_AHEAD - 1 following ones
 * that are missing too) into the cache. */
static int ensure(struct http_disk *h, uint64_t c)
{
	uint64_t n = 1, off = c * HTTP_CHUNK;

	while (n < HTTP_READ_AHEAD && c + n < h->chunks && !cached(h, c + n))
		n++;
	size_t len = off + n * HTTP_CHUNK > h->size ? (size_t)(h->size - off)
						    : (size_t)(n * HTTP_CHUNK);
	uint8_t *buf, one = 1;
	int err;

	if (cached(h, c))
		return 0;
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	err = fetch(h, off, len, buf);
	if (err == 0)
		err = block_pwrite_full(h->data_fd, buf, len, off);
	/* the data durable before the map says it is there: after a crash
	 * the map never points at zeros */
	if (err == 0 && fdatasync(h->data_fd) < 0)
		err = -errno;
	for (uint64_t i = 0; err == 0 && i < n; i++) {
		err = block_pwrite_full(h->map_fd, &one, 1, c + i);
		if (err == 0)
			__atomic_store_n(&h->map[c + i], 1, __ATOMIC_RELEASE);
	}
	free(buf);
	return err;
}

static int h_readv(struct block_backend *be, const struct iovec *iov,
		   int iovcnt, uint64_t off)
{
	struct http_disk *h = to_h(be);
	uint64_t total = 0, done = 0;

	if (block_iov_range(iov, iovcnt, off, h->size, &total) < 0)
		return -EINVAL;
	for (uint64_t c = off / HTTP_CHUNK;
	     total && c <= (off + total - 1) / HTTP_CHUNK; c++) {
		int err = ensure(h, c);

		if (err < 0)
			return -EIO;
	}
	/* all of it cached now: one vectored read from the cache (the file
	 * has the object's size, so only a signal cuts it short) */
	for (;;) {
		ssize_t r = preadv(h->data_fd, iov, iovcnt, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if ((uint64_t)r == total)
			return 0;
		break;
	}
	for (int i = 0; i < iovcnt; i++) {
		size_t got = 0;

		while (got < iov[i].iov_len) {
			ssize_t r = pread(h->data_fd,
					  (uint8_t *)iov[i].iov_base + got,
					  iov[i].iov_len - got,
					  (off_t)(off + done + got));

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				return -EIO;
			got += (size_t)r;
		}
		done += iov[i].iov_len;
	}
	return 0;
}

static int h_writev(struct block_backend *be, const struct iovec *iov,
		    int iovcnt, uint64_t off)
{
	(void)be, (void)iov, (void)iovcnt, (void)off;
	return -EROFS;
}

static int h_flush(struct block_backend *be)
{
	(void)be;
	return 0;
}

static int h_discard(struct block_backend *be, uint64_t off, uint64_t len)
{
	(void)be, (void)off, (void)len;
	return -EROFS;
}

static int h_write_zeroes(struct block_backend *be, uint64_t off, uint64_t len,
			  bool unmap)
{
	(void)be, (void)off, (void)len, (void)unmap;
	return -EROFS;
}

static uint64_t h_size(struct block_backend *be)
{
	return to_h(be)->size;
}

static void h_destroy(struct block_backend *be)
{
	struct http_disk *h = to_h(be);

	while (h->npool)
		curl_easy_cleanup(h->pool[--h->npool]);
	pthread_mutex_destroy(&h->pool_lock);
	if (h->data_fd >= 0)
		close(h->data_fd);
	if (h->map_fd >= 0)
		close(h->map_fd);
	free(h->map);
	free(h->url);
	free(h);
}

static const struct block_backend_ops http_ops = {
	.readv = h_readv,
	.writev = h_writev,
	.flush = h_flush,
	.discard = h_discard,
	.write_zeroes = h_write_zeroes,
	.size = h_size,
	.destroy = h_destroy,
};

/* ---- opening ---- */

bool block_is_url(const char *path)
{
	return !strncmp(path, "http://", 7) || !strncmp(path, "https://", 8);
}

/* Plain http only to this host's loopback (or when told). */
static int check_scheme(const char *url, bool insecure,
			const struct kiln_log *log)
{
	CURLU *u = curl_url();
	char *host = NULL;
	bool loopback;

	if (!block_is_url(url)) {
		curl_url_cleanup(u);
		return kiln_errorf(log, -EINVAL,
				   "http disk: '%s' is not an http(s) URL",
				   url);
	}
	if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		curl_url_cleanup(u);
		return kiln_errorf(log, -EINVAL, "http disk: '%s' is not a URL",
				   url);
	}
	{
		struct in_addr a4;
		struct in6_addr a6;
		char bare[64];
		size_t hl = strlen(host);

		/* an address, not a name that starts like one */
		snprintf(bare, sizeof(bare), "%.*s",
			 hl > 2 && host[0] == '[' ? (int)hl - 2 : (int)hl,
			 hl > 2 && host[0] == '[' ? host + 1 : host);
		loopback = !strcmp(host, "localhost") ||
			   (inet_pton(AF_INET, bare, &a4) == 1 &&
			    (ntohl(a4.s_addr) >> 24) == 127) ||
			   (inet_pton(AF_INET6, bare, &a6) == 1 &&
			    IN6_IS_ADDR_LOOPBACK(&a6));
	}
	curl_free(host);
	curl_url_cleanup(u);
	if (!strncmp(url, "http://", 7) && !loopback && !insecure)
		return kiln_errorf(log, -EPERM,
				   "http disk %s: plain http only to this "
				   "host's loopback (use https, or add "
				   "insecure)",
				   url);
	return 0;
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return h;
}

static int mkdirs(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(path, 0700) < 0 && errno != EEXIST) {
			*p = '/';
			return -errno;
		}
		*p = '/';
	}
	return mkdir(path, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

/* The cache files for key (data sized to the object): 0 or -errno. */
static int open_cache(struct http_disk *h, const char *key)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	char dir[PATH_MAX - 64], path[PATH_MAX];
	uint64_t id = fnv1a(key);
	char *old = NULL;
	size_t keylen = strlen(key);
	int fd, err;

	if (xdg && xdg[0] == '/')
		snprintf(dir, sizeof(dir), "%s/kiln/blocks", xdg);
	else if (home && home[0] == '/')
		snprintf(dir, sizeof(dir), "%s/.cache/kiln/blocks", home);
	else
		return -ENOENT;
	err = mkdirs(dir);
	if (err < 0)
		return err;
	/* the key file says whose cache this is; another's (a hash
	 * collision) is not used */
	snprintf(path, sizeof(path), "%s/%016llx.key", dir,
		 (unsigned long long)id);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	old = calloc(1, keylen + 2);
	if (!old) {
		close(fd);
		return -ENOMEM;
	}
	err = (int)pread(fd, old, keylen + 1, 0);
	if (err == 0) {
		/* a new cache: it is ours now */
		err = block_pwrite_full(fd, (const uint8_t *)key, keylen, 0) < 0
			      ? -1
			      : (int)keylen;
		memcpy(old, key, keylen);
	}
	close(fd);
	if (err != (int)keylen || memcmp(old, key, keylen)) {
		free(old);
		return -EEXIST;
	}
	free(old);
	snprintf(path, sizeof(path), "%s/%016llx.data", dir,
		 (unsigned long long)id);
	h->data_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	snprintf(path, sizeof(path), "%s/%016llx.map", dir,
		 (unsigned long long)id);
	h->map_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (h->data_fd < 0 || h->map_fd < 0 ||
	    ftruncate(h->data_fd, (off_t)h->size) < 0 ||
	    ftruncate(h->map_fd, (off_t)h->chunks) < 0)
		return -errno;
	return 0;
}

/* A cache nobody else sees (no validator to key it by): unlinked. */
static int private_cache(struct http_disk *h)
{
	const char *t = getenv("TMPDIR");

	h->data_fd = open(t && t[0] == '/' ? t : "/var/tmp",
			  O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	h->map_fd = open(t && t[0] == '/' ? t : "/var/tmp",
			 O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (h->data_fd < 0 || h->map_fd < 0 ||
	    ftruncate(h->data_fd, (off_t)h->size) < 0 ||
	    ftruncate(h->map_fd, (off_t)h->chunks) < 0)
		return -errno;
	return 0;
}

int block_http_open(const char *url, bool insecure, const struct kiln_log *log,
		    struct block_backend **out)
{
	struct http_disk *h;
	struct head_info hi = {0};
	curl_off_t len = -1;
	long code = 0;
	CURLcode rc;
	CURL *c;
	char key[4096 + 2 * HTTP_VALIDATOR_MAX];
	uint8_t probe[512];
	int err;

	*out = NULL;
	pthread_once(&curl_once, curl_init_once);
	err = check_scheme(url, insecure, log);
	if (err < 0)
		return err;
	h = calloc(1, sizeof(*h));
	if (!h || !(h->url = strdup(url))) {
		free(h);
		return kiln_errorf(log, -ENOMEM, "http disk: out of memory");
	}
	h->data_fd = h->map_fd = -1;
	pthread_mutex_init(&h->pool_lock, NULL);
	h->insecure = insecure;
	h->log = log;
	c = easy(h, url);
	if (!c) {
		h_destroy(&h->be);
		return -ENOMEM;
	}
	curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, head_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &hi);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
	easy_done(h, c);
	if (rc != CURLE_OK || code != 200) {
		err = kiln_errorf(log, rc != CURLE_OK ? -EHOSTUNREACH : -ENOENT,
				  "http disk %s: %s%s", url,
				  rc != CURLE_OK ? curl_easy_strerror(rc)
						 : "the server answered HTTP ",
				  rc != CURLE_OK ? ""
				  : code == 404	 ? "404 (not found)"
						 : "other than 200");
		h_destroy(&h->be);
		return err;
	}
	if (len < 0 || (uint64_t)len % BLOCK_SECTOR_SIZE || len == 0) {
		h_destroy(&h->be);
		return kiln_errorf(log, -EINVAL,
				   "http disk %s: size %lld (known, non-zero, "
				   "a multiple of 512)",
				   url, (long long)len);
	}
	h->size = (uint64_t)len;
	h->chunks = (h->size + HTTP_CHUNK - 1) / HTTP_CHUNK;
	if (hi.etag[0] && hi.etag[0] != 'W')
		snprintf(h->validator, sizeof(h->validator), "If-Match: %s",
			 hi.etag);
	else if (hi.lastmod[0])
		snprintf(h->validator, sizeof(h->validator),
			 "If-Unmodified-Since: %s", hi.lastmod);
	h->map = calloc(h->chunks, 1);
	if (!h->map) {
		h_destroy(&h->be);
		return kiln_errorf(log, -ENOMEM, "http disk: out of memory");
	}
	if (snprintf(key, sizeof(key), "%s\n%s\n%llu\n", url, h->validator,
		     (unsigned long long)h->size) >= (int)sizeof(key)) {
		h_destroy(&h->be);
		return kiln_errorf(log, -ENAMETOOLONG,
				   "http disk: URL too long");
	}
	err = h->validator[0] ? open_cache(h, key) : -ENOENT;
	if (err < 0) {
		if (h->data_fd >= 0)
			close(h->data_fd);
		if (h->map_fd >= 0)
			close(h->map_fd);
		h->data_fd = h->map_fd = -1;
		if (h->validator[0])
			kiln_logf(log, KILN_LOG_INFO,
				  "http disk %s: no shared cache (%s): a "
				  "private one",
				  url, strerror(-err));
		err = private_cache(h);
	}
	if (err < 0) {
		h_destroy(&h->be);
		return kiln_errorf(log, err, "http disk %s: no cache file: %s",
				   url, strerror(-err));
	}
	/* a server must answer a range with a range: checked now (unless
	 * this very object is cached already), not at the guest's first
	 * read */
	if (cached(h, 0))
		err = pread(h->data_fd, probe, sizeof(probe), 0) ==
				      (ssize_t)sizeof(probe)
			      ? 0
			      : -EIO;
	else
		err = fetch(h, 0, sizeof(probe), probe);
	if (err < 0) {
		h_destroy(&h->be);
		return kiln_errorf(log, err, "http disk %s: %s", url,
				   err == -ENOTSUP ? "the server does not "
						     "support range requests"
						   : "cannot read its first "
						     "bytes");
	}
	if (block_qcow2_probe(probe, sizeof(probe))) {
		h_destroy(&h->be);
		return kiln_errorf(log, -ENOTSUP,
				   "http disk %s is a qcow2 image: kiln reads "
				   "raw images over HTTP (qemu-img convert -O "
				   "raw)",
				   url);
	}
	h->be.ops = &http_ops;
	h->be.read_only = true;
	h->be.thread_safe = true;
	h->be.log = log;
	snprintf(h->be.id, sizeof(h->be.id), "kilnhttp%012llx",
		 (unsigned long long)(fnv1a(key) & 0xffffffffffffull));
	*out = &h->be;
	return 0;
}
