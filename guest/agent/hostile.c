/*
 * Hostile-guest commands: loading a kernel module, and raw hypercalls and RTAS calls through the tcelab_hcall test
 * module (guest/hcall: /dev/tcelab_hcall, its ioctl ABI in tcelab_hcall.h). Whatever the hypervisor or RTAS answers
 * is a reply, not a failure: a command fails only when the call could not be made (no module, bad arguments).
 *
 * 64-bit values are read as numbers or strings ("0x80000000") and written as "0x…" strings, as the worker's addresses
 * are; return codes, RTAS words and counts are JSON numbers.
 */
#include "agent.h"
#include "../hcall/tcelab_hcall.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * {"path"} (finit_module of a file in the guest) or {"image": base64 of the .ko} (init_module of the bytes: the
 * controller sends a module without writing a file). A module of that name already loaded is no failure:
 * {"alreadyLoaded": true}.
 */
enum outcome cmd_module_load(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	const char *path = NULL, *image = NULL;
	int prc = json_str(args, "path", &path), irc = json_str(args, "image", &image);
	if (prc == -2 || (prc == 0 && path[0] != '/'))
		return bad_arg(r, "path", -2, "an absolute path of a .ko in the guest");
	if (irc == -2)
		return bad_arg(r, "image", -2, "the .ko's bytes as base64 text");
	if ((prc == 0) == (irc == 0))
		return fail(r, "InvalidParameter", "give one of 'path' (a .ko in the guest) or 'image' (its bytes, base64)");
	long rc;
	size_t bytes = 0;
	if (path) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return fail_errno(r, errno, "open %s", path);
		rc = syscall(SYS_finit_module, fd, "", 0);
		int err = errno;
		bytes = (size_t)lseek(fd, 0, SEEK_END);
		close(fd);
		errno = err;
	} else {
		unsigned char *p;
		ssize_t n = base64_decode(image, &p);
		if (n <= 0)
			return bad_arg(r, "image", -2, "the .ko's bytes as base64 text");
		rc = syscall(SYS_init_module, p, (unsigned long)n, "");
		int err = errno;
		free(p);
		errno = err;
		bytes = (size_t)n;
	}
	if (rc && errno != EEXIST)
		return fail_errno(r, errno, "load module %s (%zu bytes)", path ? path : "image", bytes);
	sb_fmt(&r->val, "{\"alreadyLoaded\":%s,\"bytes\":%zu}", rc ? "true" : "false", bytes);
	return REPLY_OK;
}

/* The module's device, or -1 with the reply filled: ENOENT says to load the module. */
static int open_hcall_device(struct reply *r)
{
	int fd = open(TCELAB_HCALL_DEVICE, O_RDWR | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		fail(r, "ENOENT", "no %s: load the tcelab_hcall module first (module-load)", TCELAB_HCALL_DEVICE);
	else if (fd < 0)
		fail_errno(r, errno, "open %s", TCELAB_HCALL_DEVICE);
	return fd;
}

/*
 * One ioctl on the module's device; 0, or -1 with the reply filled. An errno the request itself explains (no such RTAS
 * service, no such PCI device) is said in its own words (expected, as class expected_errno's name); any other as an errno.
 */
static int hcall_ioctl(unsigned long cmd, void *arg, const char *what, int expected_errno, const char *expected, struct reply *r)
{
	int fd = open_hcall_device(r);
	if (fd < 0)
		return -1;
	int rc = ioctl(fd, cmd, arg);
	int err = errno;
	close(fd);
	if (rc && expected && err == expected_errno)
		fail(r, errno_name(err), "%s", expected);
	else if (rc)
		fail_errno(r, err, "%s", what);
	return rc ? -1 : 0;
}

/* An optional array of at most max u64 values (numbers or "0x…" strings) into out; its length, or -1 with the reply filled. */
static int u64_array(const struct jval *args, const char *key, uint64_t *out, int max, uint64_t item_max, struct reply *r)
{
	const struct jval *a = json_get(args, key);
	char want[96];
	snprintf(want, sizeof(want), "an array of at most %d integers (numbers or \"0x…\" strings) up to 0x%llx", max,
		 (unsigned long long)item_max);
	if (!a)
		return 0;
	if (a->type != J_ARR || a->n > max) {
		bad_arg(r, key, -2, want);
		return -1;
	}
	for (int i = 0; i < a->n; i++)
		if (json_val_u64(&a->items[i], &out[i]) || out[i] > item_max) {
			bad_arg(r, key, -2, want);
			return -1;
		}
	return a->n;
}

static void hex_array(struct sbuf *s, const uint64_t *v, int n)
{
	sb_raw(s, "[");
	for (int i = 0; i < n; i++)
		sb_fmt(s, "%s\"0x%llx\"", i ? "," : "", (unsigned long long)v[i]);
	sb_raw(s, "]");
}

/* {"opcode", "args": [up to 9]} → {"opcode", "rc", "out": [r4..r12]}. */
enum outcome cmd_hcall(const struct request *req, struct reply *r)
{
	struct tcelab_hcall h;
	memset(&h, 0, sizeof(h));
	uint64_t v[TCELAB_HCALL_MAX_ARGS];
	int rc = json_u64(req->args, "opcode", &v[0]);
	if (rc)
		return bad_arg(r, "opcode", rc, "a hypercall opcode such as \"0x1c\" (H_GET_TCE)");
	h.opcode = v[0];
	int n = u64_array(req->args, "args", v, TCELAB_HCALL_MAX_ARGS, UINT64_MAX, r);
	if (n < 0)
		return REPLY_ERROR;
	memcpy(h.args, v, (size_t)n * sizeof(v[0]));
	if (hcall_ioctl(TCELAB_IOC_HCALL, &h, "TCELAB_IOC_HCALL", 0, NULL, r))
		return REPLY_ERROR;
	sb_fmt(&r->val, "{\"opcode\":\"0x%llx\",\"rc\":%lld,\"out\":", (unsigned long long)h.opcode, (long long)h.rc);
	hex_array(&r->val, h.out, TCELAB_HCALL_MAX_ARGS);
	sb_raw(&r->val, "}");
	return REPLY_OK;
}

static const struct {
	const char *name;
	uint64_t where;
} list_places[] = {
	{ "page", TCELAB_LIST_PAGE },
	{ "offset", TCELAB_LIST_OFFSET },
	{ "phys", TCELAB_LIST_PHYS },
};

/*
 * {"liobn", "ioba", "npages", "tces": [values], "list": "page"|"offset"|"phys", "offset", "phys"} →
 * {"rc", "listPhys"}: H_PUT_TCE_INDIRECT with the list the module builds (see struct tcelab_indirect).
 */
enum outcome cmd_hcall_indirect(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	struct tcelab_indirect in;
	memset(&in, 0, sizeof(in));
	int rc;
	if ((rc = json_u64(args, "liobn", &in.liobn)))
		return bad_arg(r, "liobn", rc, "a logical I/O bus number such as \"0x80000000\"");
	if ((rc = json_u64(args, "ioba", &in.ioba)))
		return bad_arg(r, "ioba", rc, "an I/O bus address");
	if ((rc = json_u64(args, "npages", &in.npages)))
		return bad_arg(r, "npages", rc, "the page count passed to the hypervisor");
	static uint64_t tces[TCELAB_INDIRECT_MAX_TCES];
	int n = u64_array(args, "tces", tces, TCELAB_INDIRECT_MAX_TCES, UINT64_MAX, r);
	if (n < 0)
		return REPLY_ERROR;
	in.ntces = (uint64_t)n;
	in.tces = (uint64_t)(uintptr_t)tces;
	const char *list = "page";
	if ((rc = json_str(args, "list", &list)) == -2)
		return bad_arg(r, "list", rc, "\"page\", \"offset\" or \"phys\"");
	size_t i = 0;
	while (i < sizeof(list_places) / sizeof(list_places[0]) && strcmp(list_places[i].name, list))
		i++;
	if (i == sizeof(list_places) / sizeof(list_places[0]))
		return bad_arg(r, "list", -2, "\"page\", \"offset\" or \"phys\"");
	in.where = list_places[i].where;
	rc = json_u64(args, "offset", &in.offset);
	if ((in.where == TCELAB_LIST_OFFSET && rc) || rc == -2 || in.offset > 8192)
		return bad_arg(r, "offset", rc == -1 ? -1 : -2, "bytes from the list page's start, at most 8192 (with list \"offset\")");
	rc = json_u64(args, "phys", &in.phys);
	if ((in.where == TCELAB_LIST_PHYS && rc) || rc == -2)
		return bad_arg(r, "phys", rc == -1 ? -1 : -2, "the list's physical address (with list \"phys\")");
	if (hcall_ioctl(TCELAB_IOC_INDIRECT, &in, "TCELAB_IOC_INDIRECT (H_PUT_TCE_INDIRECT)", 0, NULL, r))
		return REPLY_ERROR;
	sb_fmt(&r->val, "{\"rc\":%lld,\"listPhys\":\"0x%llx\",\"ntces\":%d}", (long long)in.rc, (unsigned long long)in.list_phys, n);
	return REPLY_OK;
}

/* {"service", "args": [up to 8 words], "nret"} → {"service", "token", "status", "out": [nret - 1 words]}. */
enum outcome cmd_rtas(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	struct tcelab_rtas call;
	memset(&call, 0, sizeof(call));
	const char *service;
	int rc = json_str(args, "service", &service);
	if (rc || !service[0] || strlen(service) >= sizeof(call.service))
		return bad_arg(r, "service", rc ? rc : -2, "an RTAS service name such as \"ibm,query-pe-dma-window\"");
	strcpy(call.service, service);
	int n = u64_array(args, "args", call.args, TCELAB_RTAS_MAX_ARGS, 0xffffffffULL, r);
	if (n < 0)
		return REPLY_ERROR;
	call.nargs = (uint64_t)n;
	if ((rc = json_u64(args, "nret", &call.nret)) || call.nret < 1 || call.nret > TCELAB_RTAS_MAX_RET)
		return bad_arg(r, "nret", rc ? rc : -2, "the count of words returned, the status included: 1 to 8");
	char what[128], expected[160];
	snprintf(what, sizeof(what), "TCELAB_IOC_RTAS %s", service);
	snprintf(expected, sizeof(expected), "the guest's /rtas node has no property %s: no such RTAS service", service);
	if (hcall_ioctl(TCELAB_IOC_RTAS, &call, what, ENOENT, expected, r))
		return REPLY_ERROR;
	sb_raw(&r->val, "{\"service\":");
	sb_jstr(&r->val, service);
	sb_fmt(&r->val, ",\"token\":%llu,\"status\":%lld,\"out\":[", (unsigned long long)call.token, (long long)call.status);
	for (uint64_t i = 0; i + 1 < call.nret; i++)
		sb_fmt(&r->val, "%s%llu", i ? "," : "", (unsigned long long)call.out[i]);
	sb_raw(&r->val, "]}");
	return REPLY_OK;
}

/* {"address": "0001:00:00.0"} → the PE's config address and BUID as the DDW RTAS calls take them, and its windows. */
enum outcome cmd_pe_info(const struct request *req, struct reply *r)
{
	const char *address;
	unsigned d, b, s, f;
	char tail;
	int rc = json_str(req->args, "address", &address);
	if (rc || strlen(address) != 12 || sscanf(address, "%4x:%2x:%2x.%1u%c", &d, &b, &s, &f, &tail) != 4 || s > 31 || f > 7)
		return bad_arg(r, "address", rc ? rc : -2, "a PCI address such as 0001:00:01.0");
	struct tcelab_pe pe = { .domain = d, .bus = b, .devfn = s << 3 | f };
	char what[64], expected[80];
	snprintf(what, sizeof(what), "TCELAB_IOC_PE %s", address);
	snprintf(expected, sizeof(expected), "no PCI device %s in the guest", address);
	if (hcall_ioctl(TCELAB_IOC_PE, &pe, what, ENODEV, expected, r))
		return REPLY_ERROR;
	sb_raw(&r->val, "{\"address\":");
	sb_jstr(&r->val, address);
	sb_fmt(&r->val, ",\"cfgAddr\":\"0x%llx\",\"buid\":\"0x%llx\",\"buidHi\":\"0x%llx\",\"buidLo\":\"0x%llx\",\"tables\":[",
	       (unsigned long long)pe.cfg_addr, (unsigned long long)pe.buid, (unsigned long long)(pe.buid >> 32),
	       (unsigned long long)(pe.buid & 0xffffffffULL));
	int first = 1;
	for (int i = 0; i < 2; i++) {
		if (!(pe.tables & (1ULL << i)))
			continue;
		sb_fmt(&r->val, "%s{\"index\":%d,\"liobn\":\"0x%llx\",\"windowStart\":\"0x%llx\",\"windowSize\":\"0x%llx\",\"pageShift\":%llu}",
		       first ? "" : ",", i, (unsigned long long)pe.liobn[i], (unsigned long long)pe.window_start[i],
		       (unsigned long long)pe.window_size[i], (unsigned long long)pe.page_shift[i]);
		first = 0;
	}
	sb_raw(&r->val, "]}");
	return REPLY_OK;
}
