/* The processes that can keep pages pinned or locked (pin-holders), and signalling one (kill). */
#include "agent.h"
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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
