/*
 * tcelab guest agent. Serves the host over a virtio-serial port with QGA's
 * wire format: one JSON object per line, {"execute", "arguments", "id"} in,
 * {"return"} or {"error": {"class", "desc"}} out, 0xFF as the resync
 * delimiter. VFIO work runs in worker processes the agent forks, so that "the
 * userspace tool went away" can be tested while the agent stays up.
 */
#include "agent.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define PORT_NAME "org.tcelab.agent.0"
#define MAX_LINE (1024 * 1024)
#define MAX_WORKERS 16

struct worker {
	int id;
	pid_t pid;
	int fd;          /* socketpair to the worker; -1 once gone */
	int exited;      /* 1 when reaped */
	int status;      /* wait status */
};

static struct worker workers[MAX_WORKERS];
static int next_worker_id = 1;
static int port_fd = -1;

int fail(struct reply *r, const char *cls, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->desc, sizeof(r->desc), fmt, ap);
	va_end(ap);
	r->cls = cls;
	return -1;
}

const char *errno_name(int err)
{
	switch (err) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EIO: return "EIO";
	case ENXIO: return "ENXIO";
	case E2BIG: return "E2BIG";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENODEV: return "ENODEV";
	case EINVAL: return "EINVAL";
	case ENOSPC: return "ENOSPC";
	case ERANGE: return "ERANGE";
	case ENOTTY: return "ENOTTY";
	case ENOSYS: return "ENOSYS";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ETIMEDOUT: return "ETIMEDOUT";
	default: return "EUNKNOWN";
	}
}

int fail_errno(struct reply *r, int err, const char *fmt, ...)
{
	char what[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return fail(r, errno_name(err), "%s: %s (errno %d)", what, strerror(err), err);
}

int bad_arg(struct reply *r, const char *name, int rc, const char *want)
{
	return fail(r, "InvalidParameter", rc == -1 ? "argument '%s' is required (%s)" : "argument '%s' must be %s", name, want);
}

static void reap_workers(void)
{
	for (int i = 0; i < MAX_WORKERS; i++) {
		struct worker *w = &workers[i];
		if (!w->id || w->exited)
			continue;
		int st;
		if (waitpid(w->pid, &st, WNOHANG) == w->pid) {
			w->exited = 1;
			w->status = st;
			if (w->fd >= 0)
				close(w->fd);
			w->fd = -1;
		}
	}
	/* Orphaned grandchildren (holders) are reaped by init. */
}

static struct worker *find_worker(const struct jval *args, struct reply *r)
{
	uint64_t id;
	int rc = json_u64(args, "worker", &id);
	if (rc) {
		bad_arg(r, "worker", rc, "a worker id from worker-start");
		return NULL;
	}
	for (int i = 0; i < MAX_WORKERS; i++)
		if (workers[i].id == (int)id)
			return &workers[i];
	fail(r, "ENOENT", "no worker %llu", (unsigned long long)id);
	return NULL;
}

static void worker_json(struct sbuf *s, struct worker *w)
{
	sb_fmt(s, "{\"worker\":%d,\"pid\":%d,\"alive\":%s", w->id, w->pid, w->exited ? "false" : "true");
	if (w->exited) {
		if (WIFSIGNALED(w->status))
			sb_fmt(s, ",\"signal\":%d", WTERMSIG(w->status));
		else
			sb_fmt(s, ",\"exitCode\":%d", WEXITSTATUS(w->status));
	}
	sb_raw(s, "}");
}

static int cmd_worker_start(const struct jval *args, struct reply *r)
{
	(void)args;
	reap_workers();
	struct worker *slot = NULL;
	for (int i = 0; i < MAX_WORKERS; i++)
		if (!workers[i].id || workers[i].exited) {
			slot = &workers[i];
			break;
		}
	if (!slot)
		return fail(r, "EAGAIN", "at most %d workers", MAX_WORKERS);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return fail_errno(r, errno, "socketpair");
	pid_t pid = fork();
	if (pid < 0)
		return fail_errno(r, errno, "fork");
	if (pid == 0) {
		close(sv[0]);
		if (port_fd >= 0)
			close(port_fd);
		for (int i = 0; i < MAX_WORKERS; i++)
			if (workers[i].fd >= 0 && workers[i].id)
				close(workers[i].fd);
		worker_main(sv[1]);
		_exit(0);
	}
	close(sv[1]);
	memset(slot, 0, sizeof(*slot));
	slot->id = next_worker_id++;
	slot->pid = pid;
	slot->fd = sv[0];
	worker_json(&r->val, slot);
	return 0;
}

static int cmd_worker_list(const struct jval *args, struct reply *r)
{
	(void)args;
	reap_workers();
	sb_raw(&r->val, "[");
	int first = 1;
	for (int i = 0; i < MAX_WORKERS; i++) {
		if (!workers[i].id)
			continue;
		if (!first)
			sb_raw(&r->val, ",");
		first = 0;
		worker_json(&r->val, &workers[i]);
	}
	sb_raw(&r->val, "]");
	return 0;
}

static int cmd_worker_stop(const struct jval *args, struct reply *r)
{
	struct worker *w = find_worker(args, r);
	if (!w)
		return -1;
	const char *sig = "TERM";
	uint64_t wait_ms = 5000;
	int rc = json_str(args, "signal", &sig);
	if (rc == -2)
		return bad_arg(r, "signal", rc, "\"TERM\" or \"KILL\"");
	rc = json_u64(args, "waitMs", &wait_ms);
	if (rc == -2 || wait_ms > 60000)
		return bad_arg(r, "waitMs", -2, "milliseconds, at most 60000");
	int signo = !strcmp(sig, "KILL") ? SIGKILL : !strcmp(sig, "TERM") ? SIGTERM : 0;
	if (!signo)
		return bad_arg(r, "signal", -2, "\"TERM\" or \"KILL\"");
	reap_workers();
	if (!w->exited) {
		kill(w->pid, signo);
		for (uint64_t waited = 0; waited <= wait_ms && !w->exited; waited += 10) {
			reap_workers();
			if (!w->exited)
				usleep(10000);
		}
	}
	if (!w->exited)
		return fail(r, "ETIMEDOUT", "worker %d (pid %d) still alive %llu ms after SIG%s", w->id, w->pid, (unsigned long long)wait_ms, sig);
	worker_json(&r->val, w);
	return 0;
}

/* Forwards {"op", "args"} to a worker and copies its reply. */
static int cmd_worker(const struct jval *args, struct reply *r, const char *line)
{
	(void)line;
	struct worker *w = find_worker(args, r);
	if (!w)
		return -1;
	reap_workers();
	if (w->exited || w->fd < 0)
		return fail(r, "ESRCH", "worker %d (pid %d) has exited", w->id, w->pid);
	const char *op;
	int rc = json_str(args, "op", &op);
	if (rc)
		return bad_arg(r, "op", rc, "a worker operation name");
	/* Re-serialise just what the worker needs: op and its args as given. */
	struct sbuf req;
	sb_init(&req);
	sb_raw(&req, "{\"op\":");
	sb_jstr(&req, op);
	const struct jval *wargs = json_get(args, "args");
	if (wargs && wargs->type != J_OBJ) {
		sb_free(&req);
		return bad_arg(r, "args", -2, "an object");
	}
	/* The worker gets the original arguments text back from the parse tree. */
	sb_raw(&req, ",\"args\":");
	if (wargs)
		json_write(&req, wargs);
	else
		sb_raw(&req, "{}");
	sb_raw(&req, "}\n");
	ssize_t n = write(w->fd, req.buf, req.len);
	sb_free(&req);
	if (n < 0)
		return fail_errno(r, errno, "send to worker %d", w->id);
	/* One line back. */
	struct sbuf resp;
	sb_init(&resp);
	char c;
	for (;;) {
		ssize_t k = read(w->fd, &c, 1);
		if (k <= 0) {
			sb_free(&resp);
			reap_workers();
			return fail(r, "ESRCH", "worker %d (pid %d) died during '%s'", w->id, w->pid, op);
		}
		if (c == '\n')
			break;
		char one[2] = { c, 0 };
		sb_raw(&resp, one);
	}
	/* The worker's line is a complete reply object; pass it through verbatim. */
	r->cls = "__raw__";
	r->val = resp;
	return -1;
}

static int cmd_poweroff(const struct jval *args, struct reply *r)
{
	(void)args;
	(void)r;
	sync();
	/* Reply first, then power off: the host sees the reply before SHUTDOWN. */
	return 1;
}

typedef int (*handler_fn)(const struct jval *, struct reply *);
static const struct {
	const char *name;
	handler_fn fn;
} commands[] = {
	{ "info", cmd_info },
	{ "counters", cmd_counters },
	{ "bind", cmd_bind },
	{ "unbind", cmd_unbind },
	{ "read-file", cmd_read_file },
	{ "list-dir", cmd_list_dir },
	{ "write-file", cmd_write_file },
	{ "pin-holders", cmd_pin_holders },
	{ "kill", cmd_kill },
	{ "hugepages", cmd_hugepages },
	{ "worker-start", cmd_worker_start },
	{ "worker-list", cmd_worker_list },
	{ "worker-stop", cmd_worker_stop },
	{ "poweroff", cmd_poweroff },
	{ "spawn", cmd_spawn },
	{ "relay-open", cmd_relay_open },
	{ "stream-write", cmd_stream_write },
	{ "stream-close", cmd_stream_close },
};

static void write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		buf += n;
		len -= n;
	}
}

static void send_reply(struct sbuf *id, struct reply *r, int ok)
{
	struct sbuf out;
	sb_init(&out);
	if (r->cls && !strcmp(r->cls, "__raw__")) {
		/* A worker's {"return"...} or {"error"...}: add our id before the final brace. */
		if (r->val.len && r->val.buf[r->val.len - 1] == '}') {
			r->val.buf[--r->val.len] = 0;
			sb_raw(&out, r->val.buf);
			if (id->len)
				sb_fmt(&out, ",\"id\":%s", id->buf);
			sb_raw(&out, "}");
		} else {
			sb_raw(&out, "{\"error\":{\"class\":\"GenericError\",\"desc\":\"malformed worker reply\"}");
			if (id->len)
				sb_fmt(&out, ",\"id\":%s", id->buf);
			sb_raw(&out, "}");
		}
	} else if (ok) {
		sb_raw(&out, "{\"return\":");
		sb_raw(&out, r->val.len ? r->val.buf : "{}");
		if (id->len)
			sb_fmt(&out, ",\"id\":%s", id->buf);
		sb_raw(&out, "}");
	} else {
		sb_raw(&out, "{\"error\":{\"class\":");
		sb_jstr(&out, r->cls ? r->cls : "GenericError");
		sb_raw(&out, ",\"desc\":");
		sb_jstr(&out, r->desc);
		sb_raw(&out, "}");
		if (id->len)
			sb_fmt(&out, ",\"id\":%s", id->buf);
		sb_raw(&out, "}");
	}
	sb_raw(&out, "\n");
	write_all(port_fd, out.buf, out.len);
	sb_free(&out);
}


static void handle_line(const char *line)
{
	struct jval req;
	struct reply r;
	struct sbuf id;
	memset(&r, 0, sizeof(r));
	sb_init(&r.val);
	sb_init(&id);
	const char *err = json_parse(line, &req);
	if (err) {
		fail(&r, "GenericError", "request is not valid JSON: %s", err);
		send_reply(&id, &r, 0);
		sb_free(&r.val);
		return;
	}
	const struct jval *idv = json_get(&req, "id");
	if (idv && (idv->type == J_STR || idv->type == J_NUM))
		json_write(&id, idv);
	const char *cmd;
	int ok = 0;
	int rc = json_str(&req, "execute", &cmd);
	const struct jval *args = json_get(&req, "arguments");
	static const struct jval empty = { .type = J_OBJ };
	if (req.type != J_OBJ || rc) {
		fail(&r, "GenericError", "expected {\"execute\": <command>, \"arguments\": {...}}");
	} else if (args && args->type != J_OBJ) {
		fail(&r, "InvalidParameter", "'arguments' must be an object");
	} else if (!strcmp(cmd, "ping")) {
		sb_fmt(&r.val, "{\"pong\":true,\"pid\":%d}", getpid());
		ok = 1;
	} else if (!strcmp(cmd, "sync-delimited")) {
		/* QGA guest-sync-delimited: 0xFF, then the id back, so the host can
		 * drop whatever stale bytes preceded it. */
		uint64_t sid;
		if (json_u64(args, "id", &sid)) {
			bad_arg(&r, "id", -1, "an integer");
		} else {
			char ff = (char)0xff;
			write_all(port_fd, &ff, 1);
			sb_fmt(&r.val, "%llu", (unsigned long long)sid);
			ok = 1;
		}
	} else if (!strcmp(cmd, "worker")) {
		rc = cmd_worker(args ? args : &empty, &r, line);
	} else if (!strcmp(cmd, "exec")) {
		/* Replied later, when the program ends (exec_service). */
		if (exec_start(args ? args : &empty, &r, &id) == 0) {
			sb_free(&r.val);
			sb_free(&id);
			json_free(&req);
			return;
		}
	} else if (!strcmp(cmd, "stream-read")) {
		/* A long poll: replied later when data arrives (stream_service). */
		rc = stream_read_start(args ? args : &empty, &r, &id);
		if (rc == 2) {
			sb_free(&r.val);
			sb_free(&id);
			json_free(&req);
			return;
		}
		ok = rc == 0;
	} else {
		handler_fn fn = NULL;
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
			if (!strcmp(commands[i].name, cmd))
				fn = commands[i].fn;
		if (!fn) {
			fail(&r, "CommandNotFound", "the agent has no command '%s'", cmd);
		} else {
			rc = fn(args ? args : &empty, &r);
			ok = rc >= 0;
			if (rc == 1) {
				send_reply(&id, &r, 1);
				sb_free(&r.val);
				sb_free(&id);
				json_free(&req);
				usleep(100000);
				reboot(RB_POWER_OFF);
				return;
			}
		}
	}
	send_reply(&id, &r, ok);
	sb_free(&r.val);
	sb_free(&id);
	json_free(&req);
}

static int open_port(void)
{
	for (;;) {
		DIR *d = opendir("/sys/class/virtio-ports");
		if (d) {
			struct dirent *e;
			while ((e = readdir(d))) {
				if (e->d_name[0] == '.')
					continue;
				char path[300], name[128];
				snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
				ssize_t n = read_text(path, name, sizeof(name));
				if (n > 0 && !strncmp(name, PORT_NAME, strlen(PORT_NAME))) {
					snprintf(path, sizeof(path), "/dev/%s", e->d_name);
					int fd = open(path, O_RDWR | O_CLOEXEC);
					closedir(d);
					if (fd < 0)
						break;
					return fd;
				}
			}
			closedir(d);
		}
		usleep(200000);
	}
}

/*
 * `tcelab-agent echo-server PATH`: a unix-socket peer that sends back every
 * byte it gets, one connection at a time. It measures and tests the relay
 * itself, apart from whatever a real peer (the inner QEMU) costs.
 */
static int echo_server(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path))
		return 2;
	strcpy(addr.sun_path, path);
	unlink(path);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof(addr)) || listen(l, 4)) {
		perror("echo-server");
		return 1;
	}
	fprintf(stderr, "echo-server: listening on %s\n", path);
	for (;;) {
		int c = accept(l, NULL, NULL);
		if (c < 0)
			continue;
		char buf[65536];
		ssize_t n;
		while ((n = read(c, buf, sizeof(buf))) > 0)
			write_all(c, buf, (size_t)n);
		close(c);
	}
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc == 3 && !strcmp(argv[1], "echo-server"))
		return echo_server(argv[2]);
	if (argc >= 2 && !strcmp(argv[1], "hand-off"))
		return hand_off_main(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "lock"))
		return lock_main(argc, argv);
	for (int i = 0; i < MAX_WORKERS; i++)
		workers[i].fd = -1;
	port_fd = open_port();
	fprintf(stderr, "tcelab-agent: serving on the %s port (pid %d)\n", PORT_NAME, getpid());
	struct sbuf line;
	sb_init(&line);
	int discarding = 0;
	char buf[65536];
	for (;;) {
		struct pollfd fds[1 + 16 + 32];
		fds[0] = (struct pollfd){ .fd = port_fd, .events = POLLIN };
		int nexec = exec_poll_fds(fds + 1, 16);
		int streams_busy;
		int nfds = 1 + nexec;
		nfds += stream_poll_fds(fds + nfds, 32, &streams_busy);
		/* Short timeout while programs run: their exit is noticed by polling. */
		int ready = poll(fds, nfds, nexec || streams_busy ? 20 : nfds > 1 ? 200 : 1000);
		if (nexec)
			exec_service(send_reply);
		stream_service(send_reply);
		if (ready <= 0 || !(fds[0].revents & (POLLIN | POLLHUP)))
			continue;
		struct pollfd p = fds[0];
		if (p.revents & POLLHUP && !(p.revents & POLLIN)) {
			/* No host connected: wait for one. */
			usleep(100000);
			continue;
		}
		ssize_t n = read(port_fd, buf, sizeof(buf));
		if (n <= 0) {
			usleep(100000);
			continue;
		}
		for (ssize_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)buf[i];
			if (c == 0xff) {
				/* The host's resync byte: forget any partial request. */
				line.len = 0;
				discarding = 0;
				continue;
			}
			if (c == '\n') {
				if (discarding) {
					struct reply r;
					struct sbuf id;
					memset(&r, 0, sizeof(r));
					sb_init(&id);
					fail(&r, "GenericError", "request longer than %d bytes dropped", MAX_LINE);
					send_reply(&id, &r, 0);
				} else if (line.len) {
					line.buf[line.len] = 0;
					handle_line(line.buf);
				}
				line.len = 0;
				discarding = 0;
				continue;
			}
			if (discarding)
				continue;
			if (line.len >= MAX_LINE) {
				discarding = 1;
				line.len = 0;
				continue;
			}
			char one[2] = { (char)c, 0 };
			sb_raw(&line, one);
		}
	}
}
