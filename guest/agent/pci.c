/* PCI devices and IOMMU groups in sysfs: what the guest has for VFIO (info), binding a device to vfio-pci
 * and back (bind, unbind), and a device's configuration space (pci-config-read, pci-config-write). */
#include "agent.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <linux/vfio.h>

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

/* The sysfs config file of a "device" argument (a valid PCI address), or NULL with the reply filled. */
static const char *config_path(const struct jval *args, struct reply *r, char *path, size_t max)
{
	const char *bdf;
	int rc = json_str(args, "device", &bdf);
	if (rc || !valid_bdf(bdf)) {
		bad_arg(r, "device", rc ? rc : -2, "a PCI address such as 0001:00:00.0");
		return NULL;
	}
	snprintf(path, max, "/sys/bus/pci/devices/%s/config", bdf);
	return path;
}

/*
 * {"device", "offset"?, "size"?}: bytes of the device's configuration space as the kernel reads them now, hex
 * ({"hex"}). On pseries each read is an RTAS ibm,read-pci-config: the device's own answer (QEMU's view), not a copy
 * the kernel keeps. At most the 4096 bytes of an extended space; a conventional device has 256.
 */
enum outcome cmd_pci_config_read(const struct request *req, struct reply *r)
{
	char path[300];
	uint64_t offset = 0, size = 256;
	if (!config_path(req->args, r, path, sizeof(path)))
		return REPLY_ERROR;
	if (json_u64(req->args, "offset", &offset) == -2 || offset >= 4096)
		return bad_arg(r, "offset", -2, "an offset below 4096");
	if (json_u64(req->args, "size", &size) == -2 || size == 0 || offset + size > 4096)
		return bad_arg(r, "size", -2, "1 or more bytes, offset + size at most 4096");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail_errno(r, errno, "open %s", path);
	unsigned char buf[4096];
	ssize_t n = pread(fd, buf, size, (off_t)offset);
	int e = errno;
	close(fd);
	if (n < 0)
		return fail_errno(r, e, "read %s", path);
	sb_raw(&r->val, "{\"hex\":\"");
	for (ssize_t i = 0; i < n; i++)
		sb_fmt(&r->val, "%02x", buf[i]);
	sb_raw(&r->val, "\"}");
	return REPLY_OK;
}

/*
 * {"device", "offset", "hex"}: writes the bytes at offset with one pwrite of at most 4 bytes, which the kernel makes
 * one config cycle of that width when the offset is aligned to it (pci_write_config() in pci-sysfs.c): on pseries an
 * RTAS ibm,write-pci-config into QEMU. One register per call, so that the caller orders them.
 */
enum outcome cmd_pci_config_write(const struct request *req, struct reply *r)
{
	char path[300];
	uint64_t offset;
	const char *hex;
	if (!config_path(req->args, r, path, sizeof(path)))
		return REPLY_ERROR;
	int rc = json_u64(req->args, "offset", &offset);
	if (rc || offset >= 4096)
		return bad_arg(r, "offset", rc ? rc : -2, "an offset below 4096");
	rc = json_str(req->args, "hex", &hex);
	size_t len = rc ? 0 : strlen(hex);
	if (rc || (len != 2 && len != 4 && len != 8) || strspn(hex, "0123456789abcdefABCDEF") != len || offset % (len / 2))
		return bad_arg(r, "hex", rc ? rc : -2, "1, 2 or 4 bytes in hex (as they lie in config space), aligned to their width");
	unsigned char buf[4];
	for (size_t i = 0; i < len / 2; i++) {
		unsigned v;
		sscanf(hex + 2 * i, "%2x", &v);
		buf[i] = (unsigned char)v;
	}
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return fail_errno(r, errno, "open %s", path);
	ssize_t n = pwrite(fd, buf, len / 2, (off_t)offset);
	int e = errno;
	close(fd);
	if (n != (ssize_t)(len / 2))
		return n < 0 ? fail_errno(r, e, "write %s at 0x%llx", path, (unsigned long long)offset)
			     : fail(r, "EIO", "wrote %zd of %zu bytes to %s at 0x%llx", n, len / 2, path, (unsigned long long)offset);
	sb_raw(&r->val, "{}");
	return REPLY_OK;
}
