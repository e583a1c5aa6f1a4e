/* Reading and writing files: the text helpers every /proc and /sys read goes through, and the file commands
 * (read-file, write-file, list-dir). */
#include "agent.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

void trim(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = 0;
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
