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
#include <time.h>
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

static enum outcome cmd_worker_start(const struct request *req, struct reply *r)
{
	(void)req;
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
	return REPLY_OK;
}

static enum outcome cmd_worker_list(const struct request *req, struct reply *r)
{
	(void)req;
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
	return REPLY_OK;
}

static enum outcome cmd_worker_stop(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	struct worker *w = find_worker(args, r);
	if (!w)
		return REPLY_ERROR;
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
	return REPLY_OK;
}

/* Forwards {"op", "args"} to a worker and copies its reply. */
static enum outcome cmd_worker(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	struct worker *w = find_worker(args, r);
	if (!w)
		return REPLY_ERROR;
	reap_workers();
	if (w->exited || w->fd < 0)
		return fail(r, "ESRCH", "worker %d (pid %d) has exited", w->id, w->pid);
	const char *op;
	int rc = json_str(args, "op", &op);
	if (rc)
		return bad_arg(r, "op", rc, "a worker operation name");
	/* Re-serialise just what the worker needs: op and its args as given. */
	struct sbuf forward;
	sb_init(&forward);
	sb_raw(&forward, "{\"op\":");
	sb_jstr(&forward, op);
	const struct jval *wargs = json_get(args, "args");
	if (wargs && wargs->type != J_OBJ) {
		sb_free(&forward);
		return bad_arg(r, "args", -2, "an object");
	}
	/* The worker gets the original arguments text back from the parse tree. */
	sb_raw(&forward, ",\"args\":");
	if (wargs)
		json_write(&forward, wargs);
	else
		sb_raw(&forward, "{}");
	sb_raw(&forward, "}\n");
	ssize_t n = write(w->fd, forward.buf, forward.len);
	sb_free(&forward);
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
	r->val = resp;
	return REPLY_RAW;
}

static enum outcome cmd_poweroff(const struct request *req, struct reply *r)
{
	(void)req;
	(void)r;
	sync();
	/* handle_line replies first, then powers off. */
	return REPLY_AND_POWER_OFF;
}

static enum outcome cmd_ping(const struct request *req, struct reply *r)
{
	(void)req;
	sb_fmt(&r->val, "{\"pong\":true,\"pid\":%d}", getpid());
	return REPLY_OK;
}

/*
 * {"epochMs"}: sets the guest's clock (CLOCK_REALTIME). A guest restored from a saved machine wakes with the clock it
 * was saved with; one syscall here instead of running date(1), which costs a fork and an exec under TCG.
 */
static enum outcome cmd_set_time(const struct request *req, struct reply *r)
{
	uint64_t ms;
	int rc = json_u64(req->args, "epochMs", &ms);
	if (rc)
		return bad_arg(r, "epochMs", rc, "milliseconds since the epoch");
	struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000 };
	if (clock_settime(CLOCK_REALTIME, &ts))
		return fail_errno(r, errno, "clock_settime");
	sb_raw(&r->val, "{}");
	return REPLY_OK;
}

static void write_all(int fd, const char *buf, size_t len);

/* QGA guest-sync-delimited: 0xFF, then the id back, so the host can drop whatever stale bytes preceded it. */
static enum outcome cmd_sync_delimited(const struct request *req, struct reply *r)
{
	uint64_t sid;
	int rc = json_u64(req->args, "id", &sid);
	if (rc)
		return bad_arg(r, "id", rc, "an integer");
	char ff = (char)0xff;
	write_all(port_fd, &ff, 1);
	sb_fmt(&r->val, "%llu", (unsigned long long)sid);
	return REPLY_OK;
}

/* Every command the agent serves; a new command is one entry. */
static const struct {
	const char *name;
	command_fn fn;
} commands[] = {
	{ "ping", cmd_ping },
	{ "set-time", cmd_set_time },
	{ "sync-delimited", cmd_sync_delimited },
	{ "info", cmd_info },
	{ "counters", cmd_counters },
	{ "bind", cmd_bind },
	{ "unbind", cmd_unbind },
	{ "pci-config-read", cmd_pci_config_read },
	{ "pci-config-write", cmd_pci_config_write },
	{ "read-file", cmd_read_file },
	{ "list-dir", cmd_list_dir },
	{ "write-file", cmd_write_file },
	{ "pin-holders", cmd_pin_holders },
	{ "kill", cmd_kill },
	{ "exec", cmd_exec },
	{ "worker-start", cmd_worker_start },
	{ "worker-list", cmd_worker_list },
	{ "worker-stop", cmd_worker_stop },
	{ "worker", cmd_worker },
	{ "poweroff", cmd_poweroff },
	{ "spawn", cmd_spawn },
	{ "relay-open", cmd_relay_open },
	{ "stream-read", cmd_stream_read },
	{ "stream-write", cmd_stream_write },
	{ "stream-close", cmd_stream_close },
	{ "module-load", cmd_module_load },
	{ "hcall", cmd_hcall },
	{ "hcall-indirect", cmd_hcall_indirect },
	{ "rtas", cmd_rtas },
	{ "pe-info", cmd_pe_info },
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

/* The one way a reply reaches the host, now or later (the services' reply_sender). */
static void send_reply(const struct sbuf *id, struct reply *r, enum outcome o)
{
	struct sbuf out;
	sb_init(&out);
	reply_format(&out, r, o, id);
	write_all(port_fd, out.buf, out.len);
	sb_free(&out);
}

static command_fn find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, name))
			return commands[i].fn;
	return NULL;
}

/* Runs one agent command by name (the standalone runner's way in: same table, no port). */
enum outcome agent_command(const char *name, const struct jval *args, struct reply *r)
{
	command_fn fn = find_command(name);
	if (!fn)
		return fail(r, "CommandNotFound", "the agent has no command '%s'", name);
	static const struct sbuf no_id;
	return fn(&(struct request){ .args = args, .id = &no_id }, r);
}

/* Parses a request, runs its command and replies as the command's outcome says. */
static void handle_line(const char *line)
{
	struct jval parsed;
	struct reply r;
	struct sbuf id;
	memset(&r, 0, sizeof(r));
	sb_init(&r.val);
	sb_init(&id);
	static const struct jval empty = { .type = J_OBJ };
	enum outcome o;
	const char *err = json_parse(line, &parsed);
	if (err) {
		send_reply(&id, &r, fail(&r, "GenericError", "request is not valid JSON: %s", err));
		sb_free(&r.val);
		return;
	}
	const struct jval *idv = json_get(&parsed, "id");
	if (idv && (idv->type == J_STR || idv->type == J_NUM))
		json_write(&id, idv);
	const char *cmd;
	const struct jval *args = json_get(&parsed, "arguments");
	command_fn fn;
	if (parsed.type != J_OBJ || json_str(&parsed, "execute", &cmd))
		o = fail(&r, "GenericError", "expected {\"execute\": <command>, \"arguments\": {...}}");
	else if (args && args->type != J_OBJ)
		o = fail(&r, "InvalidParameter", "'arguments' must be an object");
	else if (!(fn = find_command(cmd)))
		o = fail(&r, "CommandNotFound", "the agent has no command '%s'", cmd);
	else
		o = fn(&(struct request){ .args = args ? args : &empty, .id = &id }, &r);
	if (o != REPLY_LATER)
		send_reply(&id, &r, o);
	sb_free(&r.val);
	sb_free(&id);
	json_free(&parsed);
	if (o == REPLY_AND_POWER_OFF) {
		/* The host has the reply before the SHUTDOWN event. */
		usleep(100000);
		reboot(RB_POWER_OFF);
	}
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

static int echo_server_main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: tcelab-agent echo-server PATH\n");
		return 2;
	}
	return echo_server(argv[2]);
}

/* `tcelab-agent MODE ...`: programs other than the agent itself, in the same static binary. */
static const struct {
	const char *name;
	int (*main)(int argc, char **argv);
} modes[] = {
	{ "echo-server", echo_server_main },
	{ "foreign", foreign_main },
	{ "hand-off", hand_off_main },
	{ "lock", lock_main },
	{ "run", standalone_main },
};

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; argc >= 2 && i < sizeof(modes) / sizeof(modes[0]); i++)
		if (!strcmp(argv[1], modes[i].name))
			return modes[i].main(argc, argv);
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
					memset(&r, 0, sizeof(r));
					send_reply(NULL, &r, fail(&r, "GenericError", "request longer than %d bytes dropped", MAX_LINE));
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
