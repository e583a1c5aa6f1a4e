/* The agent's view of the guest system: /proc counters, PCI devices and IOMMU
 * groups in sysfs, binding to vfio-pci, running helper programs (drmgr). */
#include "agent.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/vfio.h>

ssize_t read_text(const char *path, char *buf, size_t max)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t got = 0;
	while (got + 1 < max) {
		ssize_t n = read(fd, buf + got, max - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	close(fd);
	buf[got] = 0;
	return (ssize_t)got;
}

int write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, text, strlen(text));
	int err = n < 0 ? -errno : 0;
	close(fd);
	return err;
}

/* "Key: value kB" / "key value" files: the number after the key, or -1. */
long long kv_value(const char *path, const char *key)
{
	static char buf[65536];
	if (read_text(path, buf, sizeof(buf)) < 0)
		return -1;
	size_t kl = strlen(key);
	for (char *p = buf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (!strncmp(p, key, kl) && (p[kl] == ':' || p[kl] == ' ' || p[kl] == '\t'))
			return strtoll(p + kl + 1 + strspn(p + kl + 1, " \t:"), NULL, 10);
	}
	return -1;
}

long long proc_status_kb(pid_t pid, const char *field)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	return kv_value(path, field);
}

static void basename_of_link(const char *path, char *out, size_t max)
{
	char target[PATH_MAX];
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n < 0) {
		out[0] = 0;
		return;
	}
	target[n] = 0;
	snprintf(out, max, "%s", basename(target));
}

static void trim(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = 0;
}

static int valid_bdf(const char *bdf)
{
	unsigned d, b, s, f;
	char tail;
	return strlen(bdf) == 12 && sscanf(bdf, "%4x:%2x:%2x.%1u%c", &d, &b, &s, &f, &tail) == 4 && f < 8;
}

static void device_json(struct sbuf *s, const char *bdf)
{
	char path[300], v[32] = "", d[32] = "", drv[64] = "", grp[32] = "";
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", bdf);
	read_text(path, v, sizeof(v));
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", bdf);
	read_text(path, d, sizeof(d));
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	basename_of_link(path, drv, sizeof(drv));
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	basename_of_link(path, grp, sizeof(grp));
	trim(v);
	trim(d);
	sb_raw(s, "{\"address\":");
	sb_jstr(s, bdf);
	sb_raw(s, ",\"vendor\":");
	sb_jstr(s, v);
	sb_raw(s, ",\"device\":");
	sb_jstr(s, d);
	sb_raw(s, ",\"driver\":");
	if (drv[0])
		sb_jstr(s, drv);
	else
		sb_raw(s, "null");
	sb_fmt(s, ",\"iommuGroup\":%s}", grp[0] ? grp : "null");
}

static void groups_json(struct sbuf *s)
{
	sb_raw(s, "[");
	DIR *d = opendir("/sys/kernel/iommu_groups");
	int first = 1;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[300];
		snprintf(path, sizeof(path), "/sys/kernel/iommu_groups/%s/devices", e->d_name);
		DIR *dd = opendir(path);
		if (!first)
			sb_raw(s, ",");
		first = 0;
		char vpath[300];
		snprintf(vpath, sizeof(vpath), "/dev/vfio/%s", e->d_name);
		sb_fmt(s, "{\"group\":%s,\"vfioNode\":%s,\"devices\":[", e->d_name, access(vpath, F_OK) == 0 ? "true" : "false");
		struct dirent *de;
		int f2 = 1;
		while (dd && (de = readdir(dd))) {
			if (de->d_name[0] == '.')
				continue;
			if (!f2)
				sb_raw(s, ",");
			f2 = 0;
			device_json(s, de->d_name);
		}
		if (dd)
			closedir(dd);
		sb_raw(s, "]}");
	}
	if (d)
		closedir(d);
	sb_raw(s, "]");
}

enum outcome cmd_info(const struct request *req, struct reply *r)
{
	(void)req;
	struct utsname u;
	uname(&u);
	long long huge_kb = kv_value("/proc/meminfo", "Hugepagesize");
	sb_raw(&r->val, "{\"kernelRelease\":");
	sb_jstr(&r->val, u.release);
	sb_raw(&r->val, ",\"machine\":");
	sb_jstr(&r->val, u.machine);
	sb_fmt(&r->val, ",\"pageSize\":%ld,\"hugePageSize\":%lld,\"agentPid\":%d", sysconf(_SC_PAGESIZE), huge_kb * 1024, getpid());
	int c = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (c >= 0) {
		sb_fmt(&r->val, ",\"vfio\":{\"apiVersion\":%d,\"spaprTceV1\":%s,\"spaprTceV2\":%s}",
		       ioctl(c, VFIO_GET_API_VERSION),
		       ioctl(c, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_IOMMU) > 0 ? "true" : "false",
		       ioctl(c, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU) > 0 ? "true" : "false");
		close(c);
	} else {
		sb_raw(&r->val, ",\"vfio\":null");
	}
	sb_raw(&r->val, ",\"iommuGroups\":");
	groups_json(&r->val);
	sb_raw(&r->val, "}");
	return REPLY_OK;
}

/*
 * /proc/vmstat lags the kernel's per-CPU counter deltas until a deferrable
 * timer folds them (about once a second, later on an idle or just-restored
 * guest): nr_foll_pin_released "catches up" late, and a read can be a few
 * pages off. Writing stat_refresh folds them now, so every read the agent
 * serves is exact at the moment it is made.
 */
static void fold_vmstat(void)
{
	write_text("/proc/sys/vm/stat_refresh", "1");
}

enum outcome cmd_counters(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	uint64_t pid = 0;
	int rc = json_u64(args, "pid", &pid);
	if (rc == -2)
		return bad_arg(r, "pid", rc, "a process id");
	struct timespec ts;
	fold_vmstat();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	sb_fmt(&r->val,
	       "{\"monotonicNs\":%lld,\"nrFollPinAcquired\":%lld,\"nrFollPinReleased\":%lld,\"mlockedKb\":%lld,"
	       "\"hugePagesTotal\":%lld,\"hugePagesFree\":%lld",
	       (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec,
	       kv_value("/proc/vmstat", "nr_foll_pin_acquired"), kv_value("/proc/vmstat", "nr_foll_pin_released"),
	       kv_value("/proc/meminfo", "Mlocked"), kv_value("/proc/meminfo", "HugePages_Total"), kv_value("/proc/meminfo", "HugePages_Free"));
	if (pid) {
		long long lck = proc_status_kb((pid_t)pid, "VmLck");
		if (lck < 0)
			sb_fmt(&r->val, ",\"process\":{\"pid\":%llu,\"alive\":false}", (unsigned long long)pid);
		else
			sb_fmt(&r->val, ",\"process\":{\"pid\":%llu,\"alive\":true,\"vmLckKb\":%lld,\"vmPinKb\":%lld}",
			       (unsigned long long)pid, lck, proc_status_kb((pid_t)pid, "VmPin"));
	}
	sb_raw(&r->val, "}");
	return REPLY_OK;
}

enum outcome cmd_bind(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	const char *bdf;
	int rc = json_str(args, "device", &bdf);
	if (rc || !valid_bdf(bdf))
		return bad_arg(r, "device", rc ? rc : -2, "a PCI address such as 0001:00:00.0");
	char path[300], prev[64] = "", now[64] = "", grp[32] = "";
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", bdf);
	if (access(path, F_OK))
		return fail(r, "ENODEV", "no PCI device %s in the guest", bdf);
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	basename_of_link(path, prev, sizeof(prev));
	if (strcmp(prev, "vfio-pci")) {
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver_override", bdf);
		if ((rc = write_text(path, "vfio-pci")))
			return fail_errno(r, -rc, "write %s", path);
		if (prev[0]) {
			snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver/unbind", bdf);
			if ((rc = write_text(path, bdf)))
				return fail_errno(r, -rc, "unbind %s from %s", bdf, prev);
		}
		if ((rc = write_text("/sys/bus/pci/drivers_probe", bdf)))
			return fail_errno(r, -rc, "drivers_probe %s", bdf);
	}
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	basename_of_link(path, now, sizeof(now));
	if (strcmp(now, "vfio-pci"))
		return fail(r, "EIO", "%s is bound to '%s' after probing, not vfio-pci (is the vfio-pci module loaded?)", bdf, now[0] ? now : "nothing");
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	basename_of_link(path, grp, sizeof(grp));
	if (!grp[0])
		return fail(r, "ENODEV", "%s has no IOMMU group", bdf);
	sb_raw(&r->val, "{\"device\":");
	sb_jstr(&r->val, bdf);
	sb_raw(&r->val, ",\"previousDriver\":");
	if (prev[0])
		sb_jstr(&r->val, prev);
	else
		sb_raw(&r->val, "null");
	sb_fmt(&r->val, ",\"group\":%s}", grp);
	return REPLY_OK;
}

enum outcome cmd_unbind(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	const char *bdf;
	int rc = json_str(args, "device", &bdf);
	if (rc || !valid_bdf(bdf))
		return bad_arg(r, "device", rc ? rc : -2, "a PCI address such as 0001:00:00.0");
	char path[300], drv[64] = "";
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	basename_of_link(path, drv, sizeof(drv));
	if (drv[0]) {
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver/unbind", bdf);
		if ((rc = write_text(path, bdf)))
			return fail_errno(r, -rc, "unbind %s from %s", bdf, drv);
	}
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver_override", bdf);
	write_text(path, "\n");
	/* Give the device back to whatever driver claims it by default. */
	write_text("/sys/bus/pci/drivers_probe", bdf);
	char now[64] = "";
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	basename_of_link(path, now, sizeof(now));
	sb_raw(&r->val, "{\"device\":");
	sb_jstr(&r->val, bdf);
	sb_raw(&r->val, ",\"previousDriver\":");
	if (drv[0])
		sb_jstr(&r->val, drv);
	else
		sb_raw(&r->val, "null");
	sb_raw(&r->val, ",\"driver\":");
	if (now[0])
		sb_jstr(&r->val, now);
	else
		sb_raw(&r->val, "null");
	sb_raw(&r->val, "}");
	return REPLY_OK;
}

enum outcome cmd_read_file(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	const char *path;
	uint64_t max = 65536;
	int rc = json_str(args, "path", &path);
	if (rc || path[0] != '/')
		return bad_arg(r, "path", rc ? rc : -2, "an absolute path");
	rc = json_u64(args, "maxBytes", &max);
	if (rc == -2 || max > 4 * 1024 * 1024)
		return bad_arg(r, "maxBytes", -2, "at most 4194304");
	if (!strcmp(path, "/proc/vmstat"))
		fold_vmstat();
	char *buf = malloc(max + 1);
	ssize_t n = read_text(path, buf, max + 1);
	if (n < 0) {
		int e = errno;
		free(buf);
		return fail_errno(r, e, "read %s", path);
	}
	sb_raw(&r->val, "{\"content\":");
	sb_jstrn(&r->val, buf, n);
	sb_fmt(&r->val, ",\"truncated\":%s}", (uint64_t)n >= max ? "true" : "false");
	free(buf);
	return REPLY_OK;
}

/* Writes a short text to a file (sysfs attributes: driver_override, bind, unbind…). */
enum outcome cmd_write_file(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	const char *path, *content;
	int rc = json_str(args, "path", &path);
	if (rc || path[0] != '/')
		return bad_arg(r, "path", rc ? rc : -2, "an absolute path");
	rc = json_str(args, "content", &content);
	if (rc || strlen(content) > 65536)
		return bad_arg(r, "content", rc ? rc : -2, "a string of at most 65536 bytes");
	if ((rc = write_text(path, content)))
		return fail_errno(r, -rc, "write %s", path);
	sb_raw(&r->val, "{}");
	return REPLY_OK;
}

enum outcome cmd_list_dir(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	const char *path;
	int rc = json_str(args, "path", &path);
	if (rc || path[0] != '/')
		return bad_arg(r, "path", rc ? rc : -2, "an absolute path");
	DIR *d = opendir(path);
	if (!d)
		return fail_errno(r, errno, "open directory %s", path);
	sb_raw(&r->val, "[");
	struct dirent *e;
	int first = 1;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char full[PATH_MAX], target[PATH_MAX];
		snprintf(full, sizeof(full), "%s/%s", path, e->d_name);
		struct stat st;
		if (!first)
			sb_raw(&r->val, ",");
		first = 0;
		sb_raw(&r->val, "{\"name\":");
		sb_jstr(&r->val, e->d_name);
		if (lstat(full, &st) == 0 && S_ISLNK(st.st_mode)) {
			ssize_t n = readlink(full, target, sizeof(target) - 1);
			target[n > 0 ? n : 0] = 0;
			sb_raw(&r->val, ",\"type\":\"link\",\"target\":");
			sb_jstr(&r->val, target);
		} else {
			sb_fmt(&r->val, ",\"type\":\"%s\"", S_ISDIR(st.st_mode) ? "dir" : S_ISCHR(st.st_mode) ? "char" : "file");
		}
		sb_raw(&r->val, "}");
	}
	closedir(d);
	sb_raw(&r->val, "]");
	return REPLY_OK;
}

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

/* What one open file of a process is to VFIO, or NULL when it is nothing to VFIO. */
static const char *vfio_fd_kind(const char *target)
{
	if (!strcmp(target, "/dev/vfio/vfio"))
		return "container";
	if (!strncmp(target, "/dev/vfio/", 10))
		return "group"; /* "/dev/vfio/1 (deleted)" once the group left the container */
	if (!strcmp(target, "anon_inode:[vfio-device]"))
		return "device";
	if (!strcmp(target, "/dev/iommu"))
		return "iommufd";
	return NULL;
}

/*
 * Every process that can keep pages pinned or locked: it holds a VFIO
 * container, group, device or iommufd fd, or its mm accounts locked (VmLck)
 * or pinned (VmPin) memory. How it came by the fds does not matter (opened,
 * inherited, passed over a unix socket, taken with pidfd_getfd): /proc/<pid>/fd
 * shows them all.
 */
enum outcome cmd_pin_holders(const struct request *req, struct reply *r)
{
	(void)req;
	DIR *proc = opendir("/proc");
	if (!proc)
		return fail_errno(r, errno, "open /proc");
	sb_raw(&r->val, "[");
	int first = 1;
	struct dirent *e;
	while ((e = readdir(proc))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		char path[300], status[300];
		snprintf(status, sizeof(status), "/proc/%s/status", e->d_name);
		long long lck = kv_value(status, "VmLck"), pin = kv_value(status, "VmPin");
		snprintf(path, sizeof(path), "/proc/%s/fd", e->d_name);
		struct sbuf list;
		sb_init(&list);
		int n = 0;
		DIR *fds = opendir(path);
		struct dirent *f;
		while (fds && (f = readdir(fds))) {
			if (f->d_name[0] == '.')
				continue;
			char link[600], target[PATH_MAX];
			snprintf(link, sizeof(link), "%s/%s", path, f->d_name);
			ssize_t k = readlink(link, target, sizeof(target) - 1);
			if (k <= 0)
				continue;
			target[k] = 0;
			const char *kind = vfio_fd_kind(target);
			if (!kind)
				continue;
			sb_fmt(&list, "%s{\"fd\":%s,\"kind\":\"%s\",\"target\":", n++ ? "," : "", f->d_name, kind);
			sb_jstr(&list, target);
			sb_raw(&list, "}");
		}
		if (fds)
			closedir(fds);
		if (n || lck > 0 || pin > 0) {
			char comm[64] = "", cmdline[512] = "";
			snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
			read_text(path, comm, sizeof(comm));
			trim(comm);
			snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
			ssize_t c = read_text(path, cmdline, sizeof(cmdline));
			for (ssize_t i = 0; i + 1 < c; i++) /* NUL-separated argv → one line */
				if (!cmdline[i])
					cmdline[i] = ' ';
			trim(cmdline);
			sb_fmt(&r->val, "%s{\"pid\":%s,\"ppid\":%lld,\"comm\":", first ? "" : ",", e->d_name, kv_value(status, "PPid"));
			first = 0;
			sb_jstr(&r->val, comm);
			sb_raw(&r->val, ",\"cmdline\":");
			sb_jstr(&r->val, cmdline);
			sb_fmt(&r->val, ",\"vmLckKb\":%lld,\"vmPinKb\":%lld,\"fds\":[%s]}", lck > 0 ? lck : 0, pin > 0 ? pin : 0, n ? list.buf : "");
		}
		sb_free(&list);
	}
	closedir(proc);
	sb_raw(&r->val, "]");
	return REPLY_OK;
}

enum outcome cmd_kill(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	uint64_t pid;
	const char *sig = "TERM";
	int rc = json_u64(args, "pid", &pid);
	if (rc || pid < 2)
		return bad_arg(r, "pid", rc ? rc : -2, "a process id other than 0 and 1");
	rc = json_str(args, "signal", &sig);
	if (rc == -2)
		return bad_arg(r, "signal", rc, "TERM, KILL, INT or STOP/CONT");
	int signo = !strcmp(sig, "TERM") ? SIGTERM : !strcmp(sig, "KILL") ? SIGKILL : !strcmp(sig, "INT") ? SIGINT
		  : !strcmp(sig, "STOP") ? SIGSTOP : !strcmp(sig, "CONT") ? SIGCONT : 0;
	if (!signo)
		return bad_arg(r, "signal", -2, "TERM, KILL, INT or STOP/CONT");
	if (kill((pid_t)pid, signo))
		return fail_errno(r, errno, "kill %llu", (unsigned long long)pid);
	sb_raw(&r->val, "{}");
	return REPLY_OK;
}
