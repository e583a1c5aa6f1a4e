/*
 * Replies: failures filled in one way, and one writer for every reply line the agent or a worker sends.
 */
#include "agent.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum outcome fail(struct reply *r, const char *cls, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->desc, sizeof(r->desc), fmt, ap);
	va_end(ap);
	r->cls = cls;
	return REPLY_ERROR;
}

const char *errno_name(int err)
{
	switch (err) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case ENXIO: return "ENXIO";
	case E2BIG: return "E2BIG";
	case ENOEXEC: return "ENOEXEC";
	case EBADF: return "EBADF";
	case ECHILD: return "ECHILD";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENODEV: return "ENODEV";
	case EINVAL: return "EINVAL";
	case EFBIG: return "EFBIG";
	case ENOSPC: return "ENOSPC";
	case ERANGE: return "ERANGE";
	case ENOTTY: return "ENOTTY";
	case ENOSYS: return "ENOSYS";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EKEYREJECTED: return "EKEYREJECTED";
	default: return "EUNKNOWN";
	}
}

enum outcome fail_errno(struct reply *r, int err, const char *fmt, ...)
{
	char what[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return fail(r, errno_name(err), "%s: %s (errno %d)", what, strerror(err), err);
}

enum outcome bad_arg(struct reply *r, const char *name, int rc, const char *want)
{
	return fail(r, "InvalidParameter", rc == -1 ? "argument '%s' is required (%s)" : "argument '%s' must be %s", name, want);
}

void reply_format(struct sbuf *out, const struct reply *r, enum outcome o, const struct sbuf *id)
{
	if (o == REPLY_RAW) {
		/* A worker's {"return"...} or {"error"...}: our id goes before its final brace. */
		if (r->val.len && r->val.buf[r->val.len - 1] == '}') {
			sb_fmt(out, "%.*s", (int)r->val.len - 1, r->val.buf);
		} else {
			sb_raw(out, "{\"error\":{\"class\":\"GenericError\",\"desc\":\"malformed worker reply\"}");
		}
	} else if (o == REPLY_ERROR) {
		sb_raw(out, "{\"error\":{\"class\":");
		sb_jstr(out, r->cls ? r->cls : "GenericError");
		sb_raw(out, ",\"desc\":");
		sb_jstr(out, r->desc);
		sb_raw(out, "}");
	} else {
		sb_raw(out, "{\"return\":");
		sb_raw(out, r->val.len ? r->val.buf : "{}");
	}
	if (id && id->len)
		sb_fmt(out, ",\"id\":%s", id->buf);
	sb_raw(out, "}\n");
}
