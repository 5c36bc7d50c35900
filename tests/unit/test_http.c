/* SPDX-License-Identifier: MIT */
/* The HTTP disk backend's cache states, against a small HTTP/1.1 server in
 * this process (one thread, one request per connection) whose behaviour each
 * test sets: a cold read fetches (with read-ahead), a warm reopen fetches
 * nothing, two disks open at once share one cache, a new ETag gets a new
 * cache, a foreign key file is never used, an object that changes mid-run
 * or a server that goes away fails the read (never stale data, never a
 * hang), 5xx answers are retried, ranges ignored or a bad size refuse the
 * open. The Linux driver reading through it is the disk tier's. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/block.h"

#define MiB	 (1u << 20)
#define OBJ_SIZE (12u * MiB) /* 12 of the backend's 1 MiB chunks */

/* ---- the server ---- */

struct server {
	pthread_t thread;
	int listen_fd;
	uint16_t port;
	pthread_mutex_t lock;
	bool stop;
	/* behaviour, set by the tests */
	uint8_t *obj;
	uint32_t obj_size;
	char etag[64]; /* "" : no ETag header */
	bool ignore_ranges;
	int fail_5xx; /* answer this many range requests with 503 */
	int status;   /* non-zero: every answer has this status */
	/* what happened */
	int heads, gets, precondition_failed;
	uint64_t bytes;
};

static struct server srv;
static char cache_dir[64];

static void send_all(int fd, const void *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		p = (const uint8_t *)p + w;
		n -= (size_t)w;
	}
}

static const char *header(const char *req, const char *name)
{
	size_t n = strlen(name);

	for (const char *l = strstr(req, "\r\n"); l; l = strstr(l + 2, "\r\n"))
		if (!strncasecmp(l + 2, name, n) && l[2 + n] == ':')
			return l + 2 + n + 1 + strspn(l + 3 + n, " ");
	return NULL;
}

static void serve_one(int fd)
{
	char req[4096], hdr[512];
	size_t got = 0;
	unsigned long long a = 0, b = 0;
	const char *range, *match;
	bool head;
	int n;

	while (got < sizeof(req) - 1) {
		ssize_t r = recv(fd, req + got, sizeof(req) - 1 - got, 0);

		if (r <= 0)
			return;
		got += (size_t)r;
		req[got] = 0;
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	pthread_mutex_lock(&srv.lock);
	head = !strncmp(req, "HEAD ", 5);
	srv.heads += head;
	srv.gets += !head;
	range = header(req, "Range");
	match = header(req, "If-Match");
	if (srv.status) {
		n = snprintf(hdr, sizeof(hdr),
			     "HTTP/1.1 %d Nope\r\nContent-Length: 0\r\n"
			     "Connection: close\r\n\r\n",
			     srv.status);
		send_all(fd, hdr, (size_t)n);
	} else if (head) {
		n = snprintf(
			hdr, sizeof(hdr),
			"HTTP/1.1 200 OK\r\nContent-Length: %u\r\n%s%s%s"
			"Accept-Ranges: bytes\r\nConnection: close\r\n\r\n",
			srv.obj_size, srv.etag[0] ? "ETag: " : "", srv.etag,
			srv.etag[0] ? "\r\n" : "");
		send_all(fd, hdr, (size_t)n);
	} else if (match && strncmp(match, srv.etag, strlen(srv.etag))) {
		srv.precondition_failed++;
		n = snprintf(hdr, sizeof(hdr),
			     "HTTP/1.1 412 Precondition Failed\r\n"
			     "Content-Length: 0\r\nConnection: close\r\n\r\n");
		send_all(fd, hdr, (size_t)n);
	} else if (range && !srv.ignore_ranges && srv.fail_5xx > 0) {
		srv.fail_5xx--;
		n = snprintf(hdr, sizeof(hdr),
			     "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n"
			     "Connection: close\r\n\r\n");
		send_all(fd, hdr, (size_t)n);
	} else if (range && !srv.ignore_ranges &&
		   sscanf(range, "bytes=%llu-%llu", &a, &b) == 2 && a <= b &&
		   b < srv.obj_size) {
		n = snprintf(hdr, sizeof(hdr),
			     "HTTP/1.1 206 Partial Content\r\n"
			     "Content-Length: %llu\r\n"
			     "Content-Range: bytes %llu-%llu/%u\r\n"
			     "Connection: close\r\n\r\n",
			     b - a + 1, a, b, srv.obj_size);
		send_all(fd, hdr, (size_t)n);
		send_all(fd, srv.obj + a, (size_t)(b - a + 1));
		srv.bytes += b - a + 1;
	} else {
		n = snprintf(hdr, sizeof(hdr),
			     "HTTP/1.1 200 OK\r\nContent-Length: %u\r\n"
			     "Connection: close\r\n\r\n",
			     srv.obj_size);
		send_all(fd, hdr, (size_t)n);
		send_all(fd, srv.obj, srv.obj_size);
		srv.bytes += srv.obj_size;
	}
	pthread_mutex_unlock(&srv.lock);
}

static void *server_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p = {srv.listen_fd, POLLIN, 0};
		bool stop;

		pthread_mutex_lock(&srv.lock);
		stop = srv.stop;
		pthread_mutex_unlock(&srv.lock);
		if (stop)
			return NULL;
		if (poll(&p, 1, 50) <= 0)
			continue;
		int fd = accept(srv.listen_fd, NULL, NULL);

		if (fd < 0)
			continue;
		serve_one(fd);
		close(fd);
	}
}

static void fill_object(uint8_t seed)
{
	for (uint32_t i = 0; i < srv.obj_size; i++)
		srv.obj[i] = (uint8_t)(i * 31 + (i >> 12) + seed);
}

static int setup(void **state)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);

	(void)state;
	memset(&srv, 0, sizeof(srv));
	pthread_mutex_init(&srv.lock, NULL);
	srv.obj_size = OBJ_SIZE;
	srv.obj = malloc(OBJ_SIZE);
	assert_non_null(srv.obj);
	fill_object(0);
	strcpy(srv.etag, "\"v1\"");
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	srv.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(srv.listen_fd >= 0);
	assert_int_equal(bind(srv.listen_fd, (struct sockaddr *)&a, len), 0);
	assert_int_equal(listen(srv.listen_fd, 16), 0);
	assert_int_equal(
		getsockname(srv.listen_fd, (struct sockaddr *)&a, &len), 0);
	srv.port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&srv.thread, NULL, server_main, NULL),
			 0);
	/* a fresh cache per test */
	snprintf(cache_dir, sizeof(cache_dir), "/tmp/kiln-http-XXXXXX");
	assert_non_null(mkdtemp(cache_dir));
	setenv("XDG_CACHE_HOME", cache_dir, 1);
	return 0;
}

static void stop_server(void)
{
	pthread_mutex_lock(&srv.lock);
	if (srv.stop) {
		pthread_mutex_unlock(&srv.lock);
		return;
	}
	srv.stop = true;
	pthread_mutex_unlock(&srv.lock);
	pthread_join(srv.thread, NULL);
	close(srv.listen_fd);
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	stop_server();
	free(srv.obj);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cache_dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static const char *url(void)
{
	static char u[64];

	snprintf(u, sizeof(u), "http://127.0.0.1:%u/disk.img", srv.port);
	return u;
}

static int counter(int *c)
{
	pthread_mutex_lock(&srv.lock);
	int v = *c;
	pthread_mutex_unlock(&srv.lock);
	return v;
}

static void set_behaviour(void (*fn)(void))
{
	pthread_mutex_lock(&srv.lock);
	fn();
	pthread_mutex_unlock(&srv.lock);
}

/* Reads len bytes at off through the backend: its return value; checks
 * the bytes against the server's object when it succeeds. */
static int read_at(struct block_backend *be, uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len);
	struct iovec iov = {buf, len};
	int err;

	assert_non_null(buf);
	err = be->ops->readv(be, &iov, 1, off);
	if (err == 0) {
		pthread_mutex_lock(&srv.lock);
		assert_memory_equal(buf, srv.obj + off, len);
		pthread_mutex_unlock(&srv.lock);
	}
	free(buf);
	return err;
}

static struct block_backend *open_disk(void)
{
	struct block_backend *be = NULL;

	assert_int_equal(block_http_open(url(), false, NULL, &be), 0);
	assert_non_null(be);
	assert_true(be->read_only);
	return be;
}

/* The one file in the cache directory ending in ext: its path (static). */
static const char *cache_file(const char *ext)
{
	static char path[256];
	char dir[128];
	struct dirent *d;
	DIR *dp;
	int found = 0;

	snprintf(dir, sizeof(dir), "%s/kiln/blocks", cache_dir);
	dp = opendir(dir);
	if (!dp)
		return NULL;
	while ((d = readdir(dp))) {
		size_t n = strlen(d->d_name);

		if (n > strlen(ext) &&
		    !strcmp(d->d_name + n - strlen(ext), ext)) {
			snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
			found++;
		}
	}
	closedir(dp);
	return found == 1 ? path : NULL;
}

/* ---- the tests ---- */

static void cold_then_warm(void **state)
{
	struct block_backend *be;
	int gets;

	(void)state;
	be = open_disk();
	gets = counter(&srv.gets); /* the open's probe of the first bytes */
	assert_int_equal(gets, 1);
	/* a miss fetches its chunk and the missing ones after it in one
	 * request */
	assert_int_equal(read_at(be, 3 * MiB + 4096, 4096), 0);
	assert_int_equal(counter(&srv.gets), gets + 1);
	assert_int_equal(read_at(be, 6 * MiB - 512, 512), 0);
	assert_int_equal(read_at(be, 3 * MiB, 4 * MiB), 0);
	assert_int_equal(counter(&srv.gets), gets + 1);
	/* across a chunk edge into chunks not fetched yet */
	assert_int_equal(read_at(be, 7 * MiB - 4096, 8192), 0);
	assert_int_equal(counter(&srv.gets), gets + 2);
	/* the last, short request of the object */
	assert_int_equal(read_at(be, OBJ_SIZE - 512, 512), 0);
	assert_int_equal(read_at(be, 0, 4096), 0);
	gets = counter(&srv.gets);
	block_backend_destroy(be);

	/* warm: everything read before comes from the cache, the open
	 * included (chunk 0 is cached, so no probe) */
	be = open_disk();
	assert_int_equal(read_at(be, 3 * MiB, 5 * MiB), 0);
	assert_int_equal(read_at(be, 0, 4096), 0);
	assert_int_equal(read_at(be, OBJ_SIZE - 512, 512), 0);
	assert_int_equal(counter(&srv.gets), gets);
	/* out of range: refused, nothing fetched */
	assert_int_equal(read_at(be, OBJ_SIZE - 512, 1024), -EINVAL);
	assert_int_equal(counter(&srv.gets), gets);
	block_backend_destroy(be);
}

static void two_disks_share_a_cache(void **state)
{
	struct block_backend *a, *b;
	int gets;

	(void)state;
	a = open_disk();
	b = open_disk();
	assert_int_equal(read_at(a, 5 * MiB, 65536), 0);
	gets = counter(&srv.gets);
	/* b never fetched chunk 5, but the shared map says it is there */
	assert_int_equal(read_at(b, 5 * MiB + 65536, 65536), 0);
	assert_int_equal(counter(&srv.gets), gets);
	/* and the other way round */
	assert_int_equal(read_at(b, 10 * MiB, 4096), 0);
	gets = counter(&srv.gets);
	assert_int_equal(read_at(a, 10 * MiB, 4096), 0);
	assert_int_equal(counter(&srv.gets), gets);
	block_backend_destroy(a);
	block_backend_destroy(b);
}

static void new_etag(void)
{
	fill_object(7);
	strcpy(srv.etag, "\"v2\"");
}

static void a_new_version_gets_a_new_cache(void **state)
{
	struct block_backend *be;
	int gets;

	(void)state;
	be = open_disk();
	assert_int_equal(read_at(be, 0, 2 * MiB), 0);
	block_backend_destroy(be);
	set_behaviour(new_etag);
	gets = counter(&srv.gets);
	be = open_disk();
	/* read_at compares against the new object: the old cache is not
	 * used */
	assert_int_equal(read_at(be, 0, 2 * MiB), 0);
	assert_true(counter(&srv.gets) > gets);
	block_backend_destroy(be);
}

static void changed_mid_run_fails_reads(void **state)
{
	struct block_backend *be;

	(void)state;
	be = open_disk();
	assert_int_equal(read_at(be, 0, 4096), 0);
	set_behaviour(new_etag);
	/* a chunk not cached yet: the If-Match fails, the read fails, no
	 * retry loop */
	assert_int_equal(read_at(be, 8 * MiB, 4096), -EIO);
	assert_int_equal(counter(&srv.precondition_failed), 1);
	/* what was cached before the change is still the old version's,
	 * consistently: the disk serves one version or errors */
	block_backend_destroy(be);
}

static void foreign_key_is_not_used(void **state)
{
	struct block_backend *be;
	const char *p;
	uint8_t junk[4096];
	int fd, gets;

	(void)state;
	be = open_disk();
	assert_int_equal(read_at(be, 0, MiB), 0);
	block_backend_destroy(be);
	/* another key in the key file (a hash collision), garbage in the
	 * data the map says is cached */
	p = cache_file(".key");
	assert_non_null(p);
	fd = open(p, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "http://elsewhere/\n\"x\"\n1\n", 24), 24);
	close(fd);
	memset(junk, 0xee, sizeof(junk));
	p = cache_file(".data");
	assert_non_null(p);
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, junk, sizeof(junk), 0), sizeof(junk));
	close(fd);
	gets = counter(&srv.gets);
	be = open_disk();
	assert_int_equal(read_at(be, 0, 4096), 0); /* the object, not 0xee */
	assert_true(counter(&srv.gets) > gets);
	block_backend_destroy(be);
}

static void no_etag(void)
{
	srv.etag[0] = 0;
}

static void no_validator_means_a_private_cache(void **state)
{
	struct block_backend *be;

	(void)state;
	set_behaviour(no_etag);
	be = open_disk();
	assert_int_equal(read_at(be, MiB, 4096), 0);
	block_backend_destroy(be);
	assert_null(cache_file(".data"));
}

static void busy_twice(void)
{
	srv.fail_5xx = 2;
}

static void server_errors_are_retried(void **state)
{
	struct block_backend *be;
	int gets;

	(void)state;
	be = open_disk();
	set_behaviour(busy_twice);
	gets = counter(&srv.gets);
	assert_int_equal(read_at(be, 2 * MiB, 4096), 0);
	assert_int_equal(counter(&srv.gets), gets + 3);
	block_backend_destroy(be);
}

static void status_404(void)
{
	srv.status = 404;
}

static void status_403(void)
{
	srv.status = 403;
}

static void server_refusals_fail_without_retry(void **state)
{
	struct block_backend *be;
	int gets;

	(void)state;
	be = open_disk();
	set_behaviour(status_403);
	gets = counter(&srv.gets);
	assert_int_equal(read_at(be, 4 * MiB, 4096), -EIO);
	assert_int_equal(counter(&srv.gets), gets + 1);
	block_backend_destroy(be);
	set_behaviour(status_404);
	be = NULL;
	assert_int_equal(block_http_open(url(), false, NULL, &be), -ENOENT);
	assert_null(be);
}

static void server_gone_fails_reads(void **state)
{
	struct block_backend *be;

	(void)state;
	be = open_disk();
	assert_int_equal(read_at(be, 0, 4096), 0);
	stop_server(); /* connections refused from now on */
	assert_int_equal(read_at(be, 9 * MiB, 4096), -EIO);
	/* cached chunks still read */
	assert_int_equal(read_at(be, 0, 4096), 0);
	block_backend_destroy(be);
}

static void ranges_ignored(void)
{
	srv.ignore_ranges = true;
}

static void odd_size(void)
{
	srv.obj_size = OBJ_SIZE - 100;
}

static void refused_at_open(void **state)
{
	struct block_backend *be = NULL;

	(void)state;
	set_behaviour(ranges_ignored);
	assert_int_equal(block_http_open(url(), false, NULL, &be), -ENOTSUP);
	assert_null(be);
	set_behaviour(odd_size);
	assert_int_equal(block_http_open(url(), false, NULL, &be), -EINVAL);
	assert_null(be);
	/* plain http beyond loopback, unless told */
	assert_int_equal(
		block_http_open("http://192.0.2.1/x.img", false, NULL, &be),
		-EPERM);
	assert_int_equal(
		block_http_open("ftp://127.0.0.1/x.img", false, NULL, &be),
		-EINVAL);
	assert_null(be);
}

static void writes_are_refused(void **state)
{
	struct block_backend *be;
	uint8_t buf[512] = {0};
	struct iovec iov = {buf, sizeof(buf)};

	(void)state;
	be = open_disk();
	assert_int_equal(be->ops->writev(be, &iov, 1, 0), -EROFS);
	block_backend_destroy(be);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(cold_then_warm, setup,
						teardown),
		cmocka_unit_test_setup_teardown(two_disks_share_a_cache, setup,
						teardown),
		cmocka_unit_test_setup_teardown(a_new_version_gets_a_new_cache,
						setup, teardown),
		cmocka_unit_test_setup_teardown(changed_mid_run_fails_reads,
						setup, teardown),
		cmocka_unit_test_setup_teardown(foreign_key_is_not_used, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			no_validator_means_a_private_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(server_errors_are_retried,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			server_refusals_fail_without_retry, setup, teardown),
		cmocka_unit_test_setup_teardown(server_gone_fails_reads, setup,
						teardown),
		cmocka_unit_test_setup_teardown(refused_at_open, setup,
						teardown),
		cmocka_unit_test_setup_teardown(writes_are_refused, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
