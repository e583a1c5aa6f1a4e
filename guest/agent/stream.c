/*
 * Streams: what makes the guest usable as a lab host from outside.
 *  - spawn: a long-running program (the inner QEMU) whose stdout/stderr are
 *    buffered here until the host reads them;
 *  - relay-open: a connection to a unix socket in the guest (the inner QEMU's
 *    QMP socket), whose bytes the host writes and reads through the agent.
 * Reads are long polls: stream-read is answered as soon as there is data, the
 * stream ended, or waitMs passed, so the host sees output one virtio-serial
 * round trip after it appears, without busy polling.
 * Bytes travel base64-encoded: console output and QMP are not always UTF-8.
 */
#include "agent.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_STREAMS 16
/* Output the host has not read yet, per pipe. Beyond it, new output is dropped and counted. */
#define OUT_CAP (1024 * 1024)
/* Per reply: a reply is one line of the agent's channel and must stay small. */
#define READ_CAP (192 * 1024)
/* Bytes the host wrote that the peer has not taken yet; beyond it stream-write says EAGAIN. */
#define WRITE_CAP (1024 * 1024)

struct bytes {
	unsigned char *p;
	size_t len, cap;
};

struct stream {
	int id;            /* 0: slot free */
	int is_proc;
	pid_t pid;
	int fd[2];         /* proc: stdout, stderr; relay: the socket, -1 */
	struct bytes buf[2];
	struct bytes wbuf; /* relay: bytes for the peer, written as it takes them */
	unsigned long long dropped[2];
	int exited, status;
	int parked;        /* a stream-read waits for data */
	struct sbuf park_id;
	struct timespec park_deadline;
};

static struct stream streams[MAX_STREAMS];
static int next_stream_id = 1;

static void bytes_add(struct bytes *b, const unsigned char *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void bytes_consume(struct bytes *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void sb_base64(struct sbuf *s, const unsigned char *p, size_t n)
{
	char out[4 * 1024 + 8];
	size_t k = 0;
	sb_raw(s, "\"");
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = p[i] << 16 | (i + 1 < n ? p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
		out[k++] = B64[v >> 18 & 63];
		out[k++] = B64[v >> 12 & 63];
		out[k++] = i + 1 < n ? B64[v >> 6 & 63] : '=';
		out[k++] = i + 2 < n ? B64[v & 63] : '=';
		if (k >= 4 * 1024) {
			out[k] = 0;
			sb_raw(s, out);
			k = 0;
		}
	}
	out[k] = 0;
	sb_raw(s, out);
	sb_raw(s, "\"");
}

/* Decodes base64 into a malloc'd buffer; returns its length or -1 if the text is not base64. */
ssize_t base64_decode(const char *in, unsigned char **out)
{
	size_t n = strlen(in);
	if (n % 4)
		return -1;
	unsigned char *p = malloc(n / 4 * 3 + 1);
	size_t k = 0;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		for (int j = 0; j < 4; j++) {
			const char *c = strchr(B64, in[i + j]);
			v[j] = in[i + j] == '=' && i + 4 == n && j >= 2 ? -2 : (c && in[i + j] ? (int)(c - B64) : -1);
			if (v[j] == -1) {
				free(p);
				return -1;
			}
		}
		p[k++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (v[2] >= 0)
			p[k++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
		if (v[2] >= 0 && v[3] >= 0)
			p[k++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
	}
	*out = p;
	return (ssize_t)k;
}

static struct stream *new_stream(struct reply *r)
{
	for (int i = 0; i < MAX_STREAMS; i++)
		if (!streams[i].id) {
			struct stream *s = &streams[i];
			memset(s, 0, sizeof(*s));
			s->id = next_stream_id++;
			s->fd[0] = s->fd[1] = -1;
			sb_init(&s->park_id);
			return s;
		}
	fail(r, "EAGAIN", "at most %d streams (spawned programs and relays) may be open at once", MAX_STREAMS);
	return NULL;
}

static struct stream *find_stream(const struct jval *args, struct reply *r)
{
	uint64_t id;
	int rc = json_u64(args, "stream", &id);
	if (rc) {
		bad_arg(r, "stream", rc, "a stream id from spawn or relay-open");
		return NULL;
	}
	for (int i = 0; i < MAX_STREAMS; i++)
		if (streams[i].id && streams[i].id == (int)id)
			return &streams[i];
	fail(r, "ENOENT", "no stream %llu", (unsigned long long)id);
	return NULL;
}

enum outcome cmd_spawn(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	const struct jval *argv = argv_arg(args, 256, r);
	if (!argv)
		return REPLY_ERROR;
	const char *cwd = NULL;
	if (json_str(args, "cwd", &cwd) == -2)
		return bad_arg(r, "cwd", -2, "a directory path");
	struct stream *s = new_stream(r);
	if (!s)
		return REPLY_ERROR;
	pid_t pid = start_program(argv, cwd, 1, s->fd, r);
	if (pid < 0) {
		s->id = 0;
		return REPLY_ERROR;
	}
	s->is_proc = 1;
	s->pid = pid;
	sb_fmt(&r->val, "{\"stream\":%d,\"pid\":%d}", s->id, pid);
	return REPLY_OK;
}

enum outcome cmd_relay_open(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	const char *path;
	int rc = json_str(args, "path", &path);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (rc || strlen(path) >= sizeof(addr.sun_path))
		return bad_arg(r, "path", rc ? rc : -2, "a unix socket path shorter than 108 bytes");
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail_errno(r, errno, "socket");
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		int e = errno;
		close(fd);
		return fail_errno(r, e, "connect %s", path);
	}
	struct stream *s = new_stream(r);
	if (!s) {
		close(fd);
		return REPLY_ERROR;
	}
	fcntl(fd, F_SETFL, O_NONBLOCK);
	s->fd[0] = fd;
	sb_fmt(&r->val, "{\"stream\":%d}", s->id);
	return REPLY_OK;
}

/* Writes what the peer takes now of the queued bytes; a peer that is gone ends the relay. */
static void stream_flush(struct stream *s)
{
	while (s->wbuf.len && s->fd[0] >= 0) {
		ssize_t k = write(s->fd[0], s->wbuf.p, s->wbuf.len);
		if (k > 0) {
			bytes_consume(&s->wbuf, (size_t)k);
			continue;
		}
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		s->wbuf.len = 0;
		close(s->fd[0]);
		s->fd[0] = -1;
	}
}

enum outcome cmd_stream_write(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	struct stream *s = find_stream(args, r);
	if (!s)
		return REPLY_ERROR;
	const char *data;
	int rc = json_str(args, "data", &data);
	if (rc)
		return bad_arg(r, "data", rc, "base64 text");
	if (s->is_proc || s->fd[0] < 0)
		return fail(r, "EBADF", "stream %d is not an open relay", s->id);
	unsigned char *p;
	ssize_t n = base64_decode(data, &p);
	if (n < 0)
		return bad_arg(r, "data", -2, "base64 text");
	/* Never block here: a peer that answers as it reads (QMP, an echo) would wait
	 * for us to read its answer while we wait for it to read. Queue, and let the
	 * main loop write as the peer takes it. */
	if (s->wbuf.len + (size_t)n > WRITE_CAP) {
		free(p);
		return fail(r, "EAGAIN", "relay %d: %zu bytes still queued for the peer; write again later", s->id, s->wbuf.len);
	}
	bytes_add(&s->wbuf, p, (size_t)n);
	free(p);
	stream_flush(s);
	sb_fmt(&r->val, "{\"queued\":%zd,\"pending\":%zu}", n, s->wbuf.len);
	return REPLY_OK;
}

static long ms_until(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (t->tv_sec - now.tv_sec) * 1000 + (t->tv_nsec - now.tv_nsec) / 1000000;
}

/* Moves whatever the stream's fds have into its buffers; notes EOF by closing the fd. */
static void stream_drain(struct stream *s)
{
	unsigned char buf[16384];
	for (int k = 0; k < 2; k++) {
		while (s->fd[k] >= 0) {
			/* A relay is not read beyond what the host has yet to collect (backpressure);
			 * a program's output is always read, or it would block on a full pipe. */
			if (!s->is_proc && s->buf[k].len >= OUT_CAP)
				break;
			ssize_t n = read(s->fd[k], buf, sizeof(buf));
			if (n > 0) {
				size_t room = s->buf[k].len < OUT_CAP ? OUT_CAP - s->buf[k].len : 0;
				size_t keep = (size_t)n < room ? (size_t)n : room;
				bytes_add(&s->buf[k], buf, keep);
				s->dropped[k] += (size_t)n - keep;
				continue;
			}
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			close(s->fd[k]);
			s->fd[k] = -1;
		}
	}
	if (s->is_proc && !s->exited && waitpid(s->pid, &s->status, WNOHANG) == s->pid)
		s->exited = 1;
}

/* Finished: nothing more will come. A program is finished when it exited (its pipes
 * may be held open by a grandchild; what was written before the exit is drained). */
static int stream_done(struct stream *s)
{
	return s->is_proc ? s->exited : s->fd[0] < 0;
}

static void stream_reply(struct stream *s, struct reply *r)
{
	size_t n0 = s->buf[0].len < READ_CAP ? s->buf[0].len : READ_CAP;
	size_t n1 = s->buf[1].len < READ_CAP - n0 ? s->buf[1].len : READ_CAP - n0;
	int more = n0 < s->buf[0].len || n1 < s->buf[1].len;
	sb_raw(&r->val, "{\"out\":");
	sb_base64(&r->val, s->buf[0].p, n0);
	sb_raw(&r->val, ",\"err\":");
	sb_base64(&r->val, s->buf[1].p, n1);
	bytes_consume(&s->buf[0], n0);
	bytes_consume(&s->buf[1], n1);
	sb_fmt(&r->val, ",\"dropped\":%llu,\"done\":%s", s->dropped[0] + s->dropped[1], stream_done(s) && !more ? "true" : "false");
	if (s->is_proc && s->exited) {
		if (WIFSIGNALED(s->status))
			sb_fmt(&r->val, ",\"signal\":%d", WTERMSIG(s->status));
		else
			sb_fmt(&r->val, ",\"exitCode\":%d", WEXITSTATUS(s->status));
	}
	sb_raw(&r->val, "}");
}

static int stream_ready(struct stream *s)
{
	return s->buf[0].len || s->buf[1].len || stream_done(s);
}

/* Returns 0 with a reply, 2 when parked (replied later by stream_service), -1 on error. */
enum outcome cmd_stream_read(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	const struct sbuf *id = req->id;
	struct stream *s = find_stream(args, r);
	if (!s)
		return REPLY_ERROR;
	uint64_t wait_ms = 0;
	int rc = json_u64(args, "waitMs", &wait_ms);
	if (rc == -2 || wait_ms > 60000)
		return bad_arg(r, "waitMs", -2, "milliseconds, at most 60000");
	if (s->parked)
		return fail(r, "EBUSY", "stream %d already has a read waiting", s->id);
	stream_drain(s);
	if (stream_ready(s) || !wait_ms) {
		stream_reply(s, r);
		return REPLY_OK;
	}
	s->parked = 1;
	sb_free(&s->park_id);
	sb_init(&s->park_id);
	if (id->len)
		sb_raw(&s->park_id, id->buf);
	clock_gettime(CLOCK_MONOTONIC, &s->park_deadline);
	s->park_deadline.tv_sec += wait_ms / 1000;
	s->park_deadline.tv_nsec += (long)(wait_ms % 1000) * 1000000;
	if (s->park_deadline.tv_nsec >= 1000000000) {
		s->park_deadline.tv_sec++;
		s->park_deadline.tv_nsec -= 1000000000;
	}
	return REPLY_LATER;
}

static void stream_free(struct stream *s)
{
	for (int k = 0; k < 2; k++) {
		if (s->fd[k] >= 0)
			close(s->fd[k]);
		free(s->buf[k].p);
	}
	free(s->wbuf.p);
	sb_free(&s->park_id);
	s->id = 0;
}

enum outcome cmd_stream_close(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	struct stream *s = find_stream(args, r);
	if (!s)
		return REPLY_ERROR;
	if (s->is_proc && !s->exited) {
		stream_drain(s);
		if (!s->exited)
			return fail(r, "EBUSY", "stream %d: program %d is still running (kill it first)", s->id, s->pid);
	}
	if (s->parked)
		return fail(r, "EBUSY", "stream %d has a read waiting", s->id);
	stream_free(s);
	sb_raw(&r->val, "{}");
	return REPLY_OK;
}

int stream_poll_fds(struct pollfd *p, int max, int *busy)
{
	int n = 0;
	*busy = 0;
	for (int i = 0; i < MAX_STREAMS; i++) {
		struct stream *s = &streams[i];
		if (!s->id)
			continue;
		/* A running program's exit and a parked read's deadline are noticed by polling. */
		if (s->parked || (s->is_proc && !s->exited))
			*busy = 1;
		for (int k = 0; k < 2 && n < max; k++) {
			if (s->fd[k] < 0)
				continue;
			short ev = (s->is_proc || s->buf[k].len < OUT_CAP ? POLLIN : 0) | (k == 0 && s->wbuf.len ? POLLOUT : 0);
			if (ev)
				p[n++] = (struct pollfd){ .fd = s->fd[k], .events = ev };
		}
	}
	return n;
}

void stream_service(reply_sender send)
{
	for (int i = 0; i < MAX_STREAMS; i++) {
		struct stream *s = &streams[i];
		if (!s->id)
			continue;
		if (!s->is_proc)
			stream_flush(s);
		stream_drain(s);
		if (!s->parked || (!stream_ready(s) && ms_until(&s->park_deadline) > 0))
			continue;
		struct reply r;
		memset(&r, 0, sizeof(r));
		sb_init(&r.val);
		stream_reply(s, &r);
		s->parked = 0;
		send(&s->park_id, &r, REPLY_OK);
		sb_free(&r.val);
	}
}
