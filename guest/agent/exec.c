/* Running helper programs (drmgr…): exec, replied to when the program ends, and the fork and argv
 * handling that spawn (stream.c) shares. */
#include "agent.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void drain(int fd, struct sbuf *s, size_t cap)
{
	char buf[4096];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		size_t room = s->len < cap ? cap - s->len : 0;
		if (room) {
			char tmp[4097];
			size_t k = (size_t)n < room ? (size_t)n : room;
			memcpy(tmp, buf, k);
			tmp[k] = 0;
			sb_raw(s, tmp);
		}
	}
}

/*
 * exec runs asynchronously: the agent keeps serving (counters, file reads)
 * while a slow helper such as drmgr runs, and replies when the job ends.
 */
#define MAX_JOBS 8
struct job {
	int used;
	pid_t pid;
	int out, err;
	struct sbuf so, se;
	struct sbuf id;
	struct timespec t0;
	uint64_t timeout_ms;
	int timed_out;
};
static struct job jobs[MAX_JOBS];

static long ms_since(struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

const struct jval *argv_arg(const struct jval *args, int max, struct reply *r)
{
	const struct jval *argv = json_get(args, "argv");
	if (!argv || argv->type != J_ARR || argv->n < 1 || argv->n > max) {
		char want[64];
		snprintf(want, sizeof(want), "an array of 1 to %d strings", max);
		bad_arg(r, "argv", argv ? -2 : -1, want);
		return NULL;
	}
	for (int i = 0; i < argv->n; i++)
		if (argv->items[i].type != J_STR) {
			bad_arg(r, "argv", -2, "an array of strings");
			return NULL;
		}
	return argv;
}

pid_t start_program(const struct jval *argv, const char *cwd, int detach, int fds[2], struct reply *r)
{
	int out[2], err[2];
	if (pipe2(out, O_CLOEXEC))
		return fail_errno(r, errno, "pipe");
	if (pipe2(err, O_CLOEXEC)) {
		int e = errno;
		close(out[0]); close(out[1]);
		return fail_errno(r, e, "pipe");
	}
	char **av = calloc(argv->n + 1, sizeof(char *));
	for (int i = 0; i < argv->n; i++)
		av[i] = argv->items[i].str;
	pid_t agent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		free(av);
		close(out[0]); close(out[1]); close(err[0]); close(err[1]);
		return fail_errno(r, e, "fork");
	}
	if (pid == 0) {
		if (detach) {
			/* Its own session (a signal to it is not a signal to the agent), and it
			 * dies with the agent: a restarted agent must not inherit a lab it cannot see. */
			setsid();
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != agent)
				_exit(126);
		}
		int null = open("/dev/null", O_RDONLY);
		dup2(null, 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		if (cwd && chdir(cwd)) {
			fprintf(stderr, "chdir %s: %s\n", cwd, strerror(errno));
			_exit(127);
		}
		execvp(av[0], av);
		fprintf(stderr, "exec %s: %s\n", av[0], strerror(errno));
		_exit(127);
	}
	free(av);
	close(out[1]);
	close(err[1]);
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	fcntl(err[0], F_SETFL, O_NONBLOCK);
	fds[0] = out[0];
	fds[1] = err[0];
	return pid;
}

enum outcome cmd_exec(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	const struct sbuf *id = req->id;
	const struct jval *argv = argv_arg(args, 64, r);
	uint64_t timeout_ms = 30000;
	if (!argv)
		return REPLY_ERROR;
	int rc = json_u64(args, "timeoutMs", &timeout_ms);
	if (rc == -2 || timeout_ms > 600000)
		return bad_arg(r, "timeoutMs", -2, "milliseconds, at most 600000");
	struct job *j = NULL;
	for (int i = 0; i < MAX_JOBS; i++)
		if (!jobs[i].used) {
			j = &jobs[i];
			break;
		}
	if (!j)
		return fail(r, "EAGAIN", "at most %d programs may run at once", MAX_JOBS);
	memset(j, 0, sizeof(*j));
	clock_gettime(CLOCK_MONOTONIC, &j->t0);
	int fds[2];
	pid_t pid = start_program(argv, NULL, 0, fds, r);
	if (pid < 0)
		return REPLY_ERROR;
	j->used = 1;
	j->pid = pid;
	j->out = fds[0];
	j->err = fds[1];
	j->timeout_ms = timeout_ms;
	sb_init(&j->so);
	sb_init(&j->se);
	sb_init(&j->id);
	if (id->len)
		sb_raw(&j->id, id->buf);
	return REPLY_LATER;
}

/* Adds the running jobs' pipes to a poll set; returns how many were added. */
int exec_poll_fds(struct pollfd *p, int max)
{
	int n = 0;
	for (int i = 0; i < MAX_JOBS && n + 2 <= max; i++) {
		if (!jobs[i].used)
			continue;
		p[n++] = (struct pollfd){ .fd = jobs[i].out, .events = POLLIN };
		p[n++] = (struct pollfd){ .fd = jobs[i].err, .events = POLLIN };
	}
	return n;
}

/* Collects output, enforces timeouts, and replies for every finished job. */
void exec_service(reply_sender send)
{
	for (int i = 0; i < MAX_JOBS; i++) {
		struct job *j = &jobs[i];
		if (!j->used)
			continue;
		drain(j->out, &j->so, 65536);
		drain(j->err, &j->se, 65536);
		int status = 0;
		pid_t done = waitpid(j->pid, &status, WNOHANG);
		if (done != j->pid) {
			if ((uint64_t)ms_since(&j->t0) <= j->timeout_ms)
				continue;
			kill(j->pid, SIGKILL);
			waitpid(j->pid, &status, 0);
			j->timed_out = 1;
		}
		drain(j->out, &j->so, 65536);
		drain(j->err, &j->se, 65536);
		close(j->out);
		close(j->err);
		struct reply r;
		memset(&r, 0, sizeof(r));
		sb_init(&r.val);
		sb_fmt(&r.val, "{\"exitCode\":%d,\"signal\":%d,\"timedOut\":%s,\"durationMs\":%ld,\"stdout\":",
		       WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0, j->timed_out ? "true" : "false", ms_since(&j->t0));
		sb_jstrn(&r.val, j->so.buf ? j->so.buf : "", j->so.len);
		sb_raw(&r.val, ",\"stderr\":");
		sb_jstrn(&r.val, j->se.buf ? j->se.buf : "", j->se.len);
		sb_raw(&r.val, "}");
		send(&j->id, &r, REPLY_OK);
		sb_free(&r.val);
		sb_free(&j->so);
		sb_free(&j->se);
		sb_free(&j->id);
		j->used = 0;
	}
}
